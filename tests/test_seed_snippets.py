"""Every Keras snippet of the seed tutorials (notes on *Deep Learning with Python*) that tinynn can run runs on it.

Each snippet below is the tutorial's code with only its imports changed (and sizes/epochs shrunk so the
suite stays fast, and file paths pointed at a temporary folder); the data are small synthetic stand-ins of the
right shape and dtype: ``imdb.load_data`` gives ragged id lists, ``mnist.load_data`` random 28x28 "digits" (600 /
100 of them), the cats-vs-dogs folders hold small generated
JPEGs named as in the book, a GloVe file holds random vectors, and ``conv_base`` (the book's pretrained VGG16,
which tinynn does not ship) is a fixed random projection with VGG16's output shape. Lines marked
``# stand-in`` are such set-up, not the tutorial's code. Where the seed describes a network in words or keeps only
the first line of a listing (seed 001's MNIST and cats-vs-dogs convnets), the snippet is the book's listing.
"""

import os
import textwrap
import warnings

import numpy as np
import pytest

import tinynn

SNIPPETS = {
    "seed000 Embedding+Conv1D text classifier (RMSprop(lr=...), Dense(1) + BCE)": """
        from tinynn import layers
        from tinynn.models import Sequential
        from tinynn.optimizers import RMSprop
        max_features, max_len = 200, 60
        x_train = rng.integers(0, max_features, (64, max_len)); y_train = rng.integers(0, 2, 64)
        model = Sequential()
        model.add(layers.Embedding(max_features, 128, input_length=max_len))
        model.add(layers.Conv1D(32, 7, activation='relu'))
        model.add(layers.MaxPooling1D(5))
        model.add(layers.Conv1D(32, 7, activation='relu'))
        model.add(layers.GlobalMaxPooling1D())
        model.add(layers.Dense(1))
        model.summary()
        model.compile(optimizer=RMSprop(lr=1e-4), loss='binary_crossentropy', metrics=['acc'])
        history = model.fit(x_train, y_train, epochs=2, batch_size=128, validation_split=0.2)
        assert set(history.history) == {'loss', 'acc', 'val_loss', 'val_acc'}
    """,
    "seed000/001 Conv1D+GRU on a generator (input_shape=(None, F), fit_generator)": """
        from tinynn.models import Sequential
        from tinynn import layers
        from tinynn.optimizers import RMSprop
        float_data = rng.normal(size=(2000, 14)).astype('float32')
        def generator(data, lookback=120, delay=12, batch_size=16):
            while True:
                rows = rng.integers(lookback, len(data) - delay, batch_size)
                samples = np.stack([data[r - lookback:r] for r in rows])
                yield samples, data[rows + delay][:, 1]
        train_gen, val_gen, val_steps = generator(float_data), generator(float_data), 2
        model = Sequential()
        model.add(layers.Conv1D(32, 5, activation='relu', input_shape=(None, float_data.shape[-1])))
        model.add(layers.MaxPooling1D(3))
        model.add(layers.Conv1D(32, 5, activation='relu'))
        model.add(layers.GRU(32, dropout=0.1, recurrent_dropout=0.5))
        model.add(layers.Dense(1))
        model.summary()
        model.compile(optimizer=RMSprop(), loss='mae')
        history = model.fit_generator(train_gen, steps_per_epoch=3, epochs=2, validation_data=val_gen,
                                      validation_steps=val_steps)
        assert len(history.history['val_loss']) == 2
    """,
    "seed002 Keras's Conv1D example 1 (IMDB)": """
        from tinynn.models import Sequential
        from tinynn.layers import Embedding, Conv1D, MaxPooling1D, GlobalMaxPooling1D, Dense
        max_features, max_len = 300, 100
        model = Sequential()
        model.add(Embedding(max_features, 128, input_length=max_len))
        model.add(Conv1D(32, 7, activation='relu'))
        model.add(MaxPooling1D(5))
        model.add(Conv1D(32, 7, activation='relu'))
        model.add(GlobalMaxPooling1D())
        model.add(Dense(1, activation='sigmoid'))
        model.compile(optimizer='rmsprop', loss='binary_crossentropy', metrics=['acc'])
        model.fit(rng.integers(0, max_features, (50, max_len)), rng.integers(0, 2, 50), epochs=1)
    """,
    "seed002 stock-direction Conv1D (create_data, Flatten, adam, verbose=2)": """
        from tinynn.models import Sequential
        from tinynn.layers import Conv1D, MaxPooling1D, Dense, Flatten, Dropout
        import numpy as np
        def create_data(nb_samples, nb_steps):
            x_train = np.random.randn(nb_samples, nb_steps, 1)
            y_train = np.zeros((nb_samples, 1))
            for i in range(nb_samples):
                if x_train[i, 1:, 0].mean() > x_train[i, :-1, 0].mean():
                    y_train[i, 0] = 1.
                else:
                    y_train[i, 0] = 0.
            return x_train, y_train
        nb_samples, nb_steps, kernel_size, filters, pool_size = 200, 50, 5, 16, 4
        x_train, y_train = create_data(nb_samples, nb_steps)
        model = Sequential()
        model.add(Conv1D(filters=filters, kernel_size=kernel_size, activation='relu', input_shape=(nb_steps, 1)))
        model.add(MaxPooling1D(pool_size))
        model.add(Flatten())
        model.add(Dense(1, activation='sigmoid'))
        model.compile(loss='binary_crossentropy', optimizer='adam', metrics=['acc'])
        model.fit(x_train, y_train, epochs=2, batch_size=32, verbose=2)
    """,
    "seed001 Dense classifier on extracted features (input_dim, RMSprop(lr=2e-5), validation_data)": """
        from tinynn import models
        from tinynn import layers
        from tinynn import optimizers
        train_features = rng.random((40, 4 * 4 * 16)); train_labels = rng.integers(0, 2, 40)
        validation_features = rng.random((20, 4 * 4 * 16)); validation_labels = rng.integers(0, 2, 20)
        model = models.Sequential()
        model.add(layers.Dense(256, activation='relu', input_dim=4 * 4 * 16))
        model.add(layers.Dropout(0.5))
        model.add(layers.Dense(1, activation='sigmoid'))
        model.compile(optimizer=optimizers.RMSprop(lr=2e-5), loss='binary_crossentropy', metrics=['acc'])
        history = model.fit(train_features, train_labels, epochs=2, batch_size=20,
                            validation_data=(validation_features, validation_labels))
        assert 'val_acc' in history.history
    """,
    "seed001 the MNIST convnet (the book's listings 5.1-5.3; the seed keeps only their first line)": """
        from tinynn import layers
        from tinynn import models
        model = models.Sequential()
        model.add(layers.Conv2D(32, (3, 3), activation='relu', input_shape=(28, 28, 1)))
        model.add(layers.MaxPooling2D((2, 2)))
        model.add(layers.Conv2D(64, (3, 3), activation='relu'))
        model.add(layers.MaxPooling2D((2, 2)))
        model.add(layers.Conv2D(64, (3, 3), activation='relu'))
        model.summary()
        model.add(layers.Flatten())
        model.add(layers.Dense(64, activation='relu'))
        model.add(layers.Dense(10, activation='softmax'))
        model.summary()
        from tinynn.utils import to_categorical
        (train_images, train_labels), (test_images, test_labels) = mnist.load_data()
        train_images = train_images.reshape((600, 28, 28, 1))
        train_images = train_images.astype('float32') / 255
        test_images = test_images.reshape((100, 28, 28, 1))
        test_images = test_images.astype('float32') / 255
        train_labels = to_categorical(train_labels)
        test_labels = to_categorical(test_labels)
        model.compile(optimizer='rmsprop',
                      loss='categorical_crossentropy',
                      metrics=['accuracy'])
        model.fit(train_images, train_labels, epochs=1, batch_size=64)
        test_loss, test_acc = model.evaluate(test_images, test_labels)
        assert model.count_params() == 93322 and model.output_shapes()[4] == (None, 3, 3, 64)  # the book's summary
        assert 0 <= test_acc <= 1 and np.isfinite(test_loss)
    """,
    "seed003 the SeparableConv2D image classifier": """
        height, width, channels, num_classes = 64, 64, 3, 10  # stand-in: the seed leaves them open
        from tinynn import models
        from tinynn import layers
        model = models.Sequential()
        model.add(layers.SeparableConv2D(32, 3, activation='relu',
                                         input_shape=(height, width, channels)))
        model.add(layers.SeparableConv2D(64, 3, activation='relu'))
        model.add(layers.MaxPooling2D(2))
        model.add(layers.SeparableConv2D(64, 3, activation='relu'))
        model.add(layers.SeparableConv2D(128, 3, activation='relu'))
        model.add(layers.MaxPooling2D(2))
        model.add(layers.SeparableConv2D(64, 3, activation='relu'))
        model.add(layers.SeparableConv2D(128, 3, activation='relu'))
        model.add(layers.GlobalAveragePooling2D())
        model.add(layers.Dense(32, activation='relu'))
        model.add(layers.Dense(num_classes, activation='softmax'))
        model.compile(optimizer='rmsprop', loss='categorical_crossentropy')
        x = rng.random((16, height, width, channels)); y = np.eye(num_classes)[rng.integers(0, 10, 16)]  # stand-in
        history = model.fit(x, y, epochs=1, batch_size=8, verbose=0)                                    # stand-in
        assert model.output_shapes()[-4] == (None, 9, 9, 128) and np.isfinite(history.history['loss'][0])
    """,
    "seed001 stacked SimpleRNN": """
        from tinynn.models import Sequential
        from tinynn.layers import Embedding, SimpleRNN, Dense
        max_features = 500
        model = Sequential()
        model.add(Embedding(max_features, 32))
        model.add(SimpleRNN(32, return_sequences=True))
        model.add(SimpleRNN(32))
        model.add(Dense(1, activation='sigmoid'))
        model.compile(optimizer='rmsprop', loss='binary_crossentropy', metrics=['acc'])
        model.fit(rng.integers(0, max_features, (40, 30)), rng.integers(0, 2, 40), epochs=1, batch_size=16)
    """,
    "seed001 Bidirectional LSTM": """
        from tinynn import layers
        from tinynn.models import Sequential
        max_features = 500
        model = Sequential()
        model.add(layers.Embedding(max_features, 32))
        model.add(layers.Bidirectional(layers.LSTM(32)))
        model.add(layers.Dense(1, activation='sigmoid'))
        model.compile(optimizer='rmsprop', loss='binary_crossentropy', metrics=['acc'])
        history = model.fit(rng.integers(0, max_features, (40, 25)), rng.integers(0, 2, 40), epochs=2,
                            batch_size=128, validation_split=0.2)
    """,
    "seed003 the four Dense recipes": """
        from tinynn import models
        from tinynn import layers
        num_input_features, num_classes, num_values = 10, 4, 2
        x = rng.normal(size=(32, num_input_features))
        targets = {
            ('sigmoid', 1, 'binary_crossentropy'): rng.integers(0, 2, (32, 1)),
            ('softmax', num_classes, 'categorical_crossentropy'): np.eye(num_classes)[rng.integers(0, 4, 32)],
            ('softmax', num_classes, 'sparse_categorical_crossentropy'): rng.integers(0, num_classes, 32),
            ('sigmoid', num_classes, 'binary_crossentropy'): rng.integers(0, 2, (32, num_classes)),
            (None, num_values, 'mse'): rng.normal(size=(32, num_values)),
        }
        for (activation, units, loss), y in targets.items():
            model = models.Sequential()
            model.add(layers.Dense(32, activation='relu', input_shape=(num_input_features,)))
            model.add(layers.Dense(32, activation='relu'))
            model.add(layers.Dense(units, activation=activation))
            model.compile(optimizer='rmsprop', loss=loss)
            model.fit(x, y, epochs=1, verbose=0)
    """,
    "seed001 one-hot encoding of words with the Keras Tokenizer": """
        from tinynn.preprocessing.text import Tokenizer
        samples = ['The cat sat on the mat.', 'The dog ate my homework.']
        tokenizer = Tokenizer(num_words=1000)
        tokenizer.fit_on_texts(samples)
        sequences = tokenizer.texts_to_sequences(samples)
        one_hot_results = tokenizer.texts_to_matrix(samples, mode='binary')
        word_index = tokenizer.word_index
        assert word_index['the'] == 1 and word_index['homework'] == 9 and len(word_index) == 9
        assert sequences == [[1, 2, 3, 4, 1, 5], [1, 6, 7, 8, 9]] and one_hot_results.shape == (2, 1000)
    """,
    "seed001 Embedding(input_length) layer and Embedding(input_length)+Flatten+Dense": """
        maxlen = 20  # stand-in: the book's value
        from tinynn.layers import Embedding
        embedding_layer = Embedding(1000, 64, input_length=10)
        from tinynn.models import Sequential
        from tinynn.layers import Flatten, Dense, Embedding
        model = Sequential()
        model.add(Embedding(10000, 8, input_length=maxlen))
        model.add(Flatten())
        model.add(Dense(1, activation='sigmoid'))
        lines = []; model.summary(print_fn=lines.append)  # stand-in: the book prints model.summary()
        assert model.output_shapes() == [(None, 20, 8), (None, 160), (None, 1)] and model.count_params() == 80161
    """,
    "seed001 pretrained GloVe embeddings: parse the file, embedding matrix, set_weights, freeze": """
        import os
        from tinynn.preprocessing.text import Tokenizer                         # stand-in: the book's data
        from tinynn.preprocessing.sequence import pad_sequences                 # preparation (listing 6.9)
        maxlen, max_words, training_samples = 100, 10000, 40                    # stand-in
        texts, labels = make_reviews(60), rng.integers(0, 2, 60)                # stand-in
        tokenizer = Tokenizer(num_words=max_words)                              # stand-in
        tokenizer.fit_on_texts(texts)                                           # stand-in
        word_index = tokenizer.word_index                                       # stand-in
        data = pad_sequences(tokenizer.texts_to_sequences(texts), maxlen=maxlen)  # stand-in
        x_train, y_train = data[:training_samples], labels[:training_samples]  # stand-in
        x_val, y_val = data[training_samples:], labels[training_samples:]       # stand-in
        glove_dir = write_glove(word_index, 100)                                # stand-in for the download
        embeddings_index = {}
        f = open(os.path.join(glove_dir, 'glove.6B.100d.txt'))
        for line in f:
            values = line.split()
            word = values[0]
            coefs = np.asarray(values[1:], dtype='float32')
            embeddings_index[word] = coefs
        f.close()
        embedding_dim = 100
        embedding_matrix = np.zeros((max_words, embedding_dim))
        for word, i in word_index.items():
            if i < max_words:
                embedding_vector = embeddings_index.get(word)
                if embedding_vector is not None:
                    embedding_matrix[i] = embedding_vector
        from tinynn.models import Sequential                  # the model the seed elides ("..."), book listing 6.13
        from tinynn.layers import Embedding, Flatten, Dense
        model = Sequential()
        model.add(Embedding(max_words, embedding_dim, input_length=maxlen))
        model.add(Flatten())
        model.add(Dense(32, activation='relu'))
        model.add(Dense(1, activation='sigmoid'))
        model.summary()
        model.layers[0].set_weights([embedding_matrix])
        model.layers[0].trainable = False
        model.compile(optimizer='rmsprop', loss='binary_crossentropy', metrics=['acc'])
        history = model.fit(x_train, y_train, epochs=2, batch_size=32, validation_data=(x_val, y_val))
        assert model.output_shapes() == [(None, 100, 100), (None, 10000), (None, 32), (None, 1)]
        np.testing.assert_array_equal(model.layers[0].get_weights()[0], embedding_matrix.astype('float32'))
        assert np.count_nonzero(embedding_matrix.any(axis=1)) == len(embeddings_index)
    """,
    "seed001 LSTM on reversed IMDB sequences (sequence.pad_sequences)": """
        from tinynn.preprocessing import sequence
        from tinynn import layers
        from tinynn.models import Sequential
        max_features = 10000
        maxlen = 500
        (x_train, y_train), (x_test, y_test) = imdb.load_data(
            num_words=max_features)
        x_train = [x[::-1] for x in x_train]
        x_test = [x[::-1] for x in x_test]
        x_train = sequence.pad_sequences(x_train, maxlen=maxlen)
        x_test = sequence.pad_sequences(x_test, maxlen=maxlen)
        model = Sequential()
        model.add(layers.Embedding(max_features, 128))
        model.add(layers.LSTM(32))
        model.add(layers.Dense(1, activation='sigmoid'))
        model.compile(optimizer='rmsprop',
                      loss='binary_crossentropy',
                      metrics=['acc'])
        history = model.fit(x_train, y_train,
                            epochs=1,
                            batch_size=128,
                            validation_split=0.2)
        assert x_train.shape == (len(y_train), 500) and x_train.dtype == np.int32
    """,
    "seed001 cats vs dogs: ImageDataGenerator(rescale) + flow_from_directory + fit_generator": """
        train_dir, validation_dir = cats_and_dogs('train'), cats_and_dogs('validation')   # stand-in paths
        # the network the seed describes ("(卷积+池化)*4 + 展平 + 全连接 + sigmoid激活"), as the book lists it
        from tinynn import layers
        from tinynn import models
        model = models.Sequential()
        model.add(layers.Conv2D(32, (3, 3), activation='relu',
                                input_shape=(150, 150, 3)))
        model.add(layers.MaxPooling2D((2, 2)))
        model.add(layers.Conv2D(64, (3, 3), activation='relu'))
        model.add(layers.MaxPooling2D((2, 2)))
        model.add(layers.Conv2D(128, (3, 3), activation='relu'))
        model.add(layers.MaxPooling2D((2, 2)))
        model.add(layers.Conv2D(128, (3, 3), activation='relu'))
        model.add(layers.MaxPooling2D((2, 2)))
        model.add(layers.Flatten())
        model.add(layers.Dense(512, activation='relu'))
        model.add(layers.Dense(1, activation='sigmoid'))
        from tinynn import optimizers
        model.compile(loss='binary_crossentropy',
                      optimizer=optimizers.RMSprop(lr=1e-4),
                      metrics=['acc'])
        from tinynn.preprocessing.image import ImageDataGenerator
        train_datagen = ImageDataGenerator(rescale=1./255)
        test_datagen = ImageDataGenerator(rescale=1./255)
        train_generator = train_datagen.flow_from_directory(
            train_dir,
            target_size=(150, 150),
            batch_size=20,
            class_mode='binary')
        validation_generator = test_datagen.flow_from_directory(
            validation_dir,
            target_size=(150, 150),
            batch_size=20,
            class_mode='binary')
        history = model.fit_generator(
            train_generator,
            steps_per_epoch=2,
            epochs=1,
            validation_data=validation_generator,
            validation_steps=1)
        assert train_generator.class_indices == {'cats': 0, 'dogs': 1}
        assert set(history.history) == {'loss', 'acc', 'val_loss', 'val_acc'}
        assert model.output_shapes()[:8] == [(None, 148, 148, 32), (None, 74, 74, 32), (None, 72, 72, 64),
                                             (None, 36, 36, 64), (None, 34, 34, 128), (None, 17, 17, 128),
                                             (None, 15, 15, 128), (None, 7, 7, 128)] and model.count_params() == 3453121
    """,
    "seed001 cats vs dogs: data augmentation listings": """
        train_dir, validation_dir = cats_and_dogs('train'), cats_and_dogs('validation')   # stand-in paths
        # the convnet with Dropout that the augmentation listings train (the book's listing 5.13)
        from tinynn import layers
        from tinynn import models
        from tinynn import optimizers
        model = models.Sequential()
        model.add(layers.Conv2D(32, (3, 3), activation='relu',
                                input_shape=(150, 150, 3)))
        model.add(layers.MaxPooling2D((2, 2)))
        model.add(layers.Conv2D(64, (3, 3), activation='relu'))
        model.add(layers.MaxPooling2D((2, 2)))
        model.add(layers.Conv2D(128, (3, 3), activation='relu'))
        model.add(layers.MaxPooling2D((2, 2)))
        model.add(layers.Conv2D(128, (3, 3), activation='relu'))
        model.add(layers.MaxPooling2D((2, 2)))
        model.add(layers.Flatten())
        model.add(layers.Dropout(0.5))
        model.add(layers.Dense(512, activation='relu'))
        model.add(layers.Dense(1, activation='sigmoid'))
        model.compile(loss='binary_crossentropy',
                      optimizer=optimizers.RMSprop(lr=1e-4),
                      metrics=['acc'])
        from tinynn.preprocessing.image import ImageDataGenerator
        datagen = ImageDataGenerator(
            rotation_range=40,
            width_shift_range=0.2,
            height_shift_range=0.2,
            shear_range=0.2,
            zoom_range=0.2,
            horizontal_flip=True,
            fill_mode='nearest')
        train_datagen = ImageDataGenerator(
            rescale=1./255,
            rotation_range=40,
            width_shift_range=0.2,
            height_shift_range=0.2,
            shear_range=0.2,
            zoom_range=0.2,
            horizontal_flip=True,)
        test_datagen = ImageDataGenerator(rescale=1./255)
        train_generator = train_datagen.flow_from_directory(
            train_dir,
            target_size=(150, 150),
            batch_size=32,
            class_mode='binary')
        validation_generator = test_datagen.flow_from_directory(
            validation_dir,
            target_size=(150, 150),
            batch_size=32,
            class_mode='binary')
        history = model.fit_generator(
            train_generator,
            steps_per_epoch=2,
            epochs=1,
            validation_data=validation_generator,
            validation_steps=1)
        model.save('cats_and_dogs_small_2.h5')  # the book's next line (listing 5.14): the file the seed loads back
        x = np.asarray(datagen.random_transform(np.full((150, 150, 3), 100.0)))   # stand-in check
        assert x.shape == (150, 150, 3) and np.allclose(x, 100.0)   # fill_mode='nearest' keeps a flat image
        from tinynn.models import load_model                                      # stand-in check: the file
        again = load_model('cats_and_dogs_small_2.h5')                            # holds the trained model
        batch = next(validation_generator)[0]                                     # (weights, optimizer state)
        assert np.array_equal(again.predict(batch), model.predict(batch))
        assert again.optimizer.get_state()['iterations'] == model.optimizer.get_state()['iterations'] == 2
    """,
    "seed001 feature extraction: extract_features over flow_from_directory, then a Dense classifier": """
        base_dir = cats_and_dogs('')  # stand-in path
        import os
        import numpy as np
        from tinynn.preprocessing.image import ImageDataGenerator
        train_dir = os.path.join(base_dir, 'train')
        validation_dir = os.path.join(base_dir, 'validation')
        test_dir = os.path.join(base_dir, 'test')
        datagen = ImageDataGenerator(rescale=1./255)
        batch_size = 20
        def extract_features(directory, sample_count):
            features = np.zeros(shape=(sample_count, 4, 4, 512))
            labels = np.zeros(shape=(sample_count))
            generator = datagen.flow_from_directory(
                directory,
                target_size=(150, 150),
                batch_size=batch_size,
                class_mode='binary')
            i = 0
            for inputs_batch, labels_batch in generator:
                features_batch = conv_base.predict(inputs_batch)
                features[i * batch_size : (i + 1) * batch_size] = features_batch
                labels[i * batch_size : (i + 1) * batch_size] = labels_batch
                i += 1
                if i * batch_size >= sample_count:
                    break
            return features, labels
        train_features, train_labels = extract_features(train_dir, 200)
        validation_features, validation_labels = extract_features(validation_dir, 100)
        test_features, test_labels = extract_features(test_dir, 100)
        train_features = np.reshape(train_features, (200, 4 * 4 * 512))
        validation_features = np.reshape(validation_features, (100, 4 * 4 * 512))
        test_features = np.reshape(test_features, (100, 4 * 4 * 512))
        from tinynn import models
        from tinynn import layers
        from tinynn import optimizers
        model = models.Sequential()
        model.add(layers.Dense(256, activation='relu', input_dim=4 * 4 * 512))
        model.add(layers.Dropout(0.5))
        model.add(layers.Dense(1, activation='sigmoid'))
        model.compile(optimizer=optimizers.RMSprop(lr=2e-5),
                      loss='binary_crossentropy',
                      metrics=['acc'])
        history = model.fit(train_features, train_labels,
                            epochs=1,
                            batch_size=20,
                            validation_data=(validation_features, validation_labels))
        assert sorted(set(train_labels)) == [0.0, 1.0] and train_labels.mean() == 0.5   # 10 passes over 20 files
    """,
    "seed001 one image as a batch: image.load_img, img_to_array, expand_dims": """
        img_path = os.path.join(cats_and_dogs('test'), 'cats', 'cat.1500.jpg')   # stand-in path
        from tinynn.preprocessing import image
        import numpy as np
        img = image.load_img(img_path, target_size=(150, 150))
        img_tensor = image.img_to_array(img)
        img_tensor = np.expand_dims(img_tensor, axis=0)
        img_tensor /= 255.
        assert img_tensor.shape == (1, 150, 150, 3) and 0 <= img_tensor.min() and img_tensor.max() <= 1
    """,
    "seed003 single-label multiclass recipe with one-hot targets from to_categorical": """
        from tinynn import models
        from tinynn import layers
        from tinynn.utils import to_categorical      # the book's `from keras.utils import to_categorical`
        num_input_features, num_classes = 10, 4                                   # stand-in
        x, train_labels = rng.normal(size=(64, 10)), rng.integers(0, 4, 64)       # stand-in
        one_hot_train_labels = to_categorical(train_labels)
        model = models.Sequential()
        model.add(layers.Dense(32, activation='relu', input_shape=(num_input_features,)))
        model.add(layers.Dense(32, activation='relu'))
        model.add(layers.Dense(num_classes, activation='softmax'))
        model.compile(optimizer='rmsprop', loss='categorical_crossentropy')
        model.fit(x, one_hot_train_labels, epochs=1, verbose=0)
        assert one_hot_train_labels.shape == (64, 4)
    """,
    "seed001 intermediate activations of cats_and_dogs_small_2.h5 (load_model, load_img, activation model)": """
        write_cats_and_dogs_small_2()  # stand-in: the augmentation snippet above trains and saves this file
        img_dir = cats_and_dogs('test')  # stand-in for the book's folder
        # --- from here the seed's listings, verbatim (imports and the image path changed) ---
        from tinynn.models import load_model
        model = load_model('cats_and_dogs_small_2.h5')
        # 单张图像预处理
        img_path = os.path.join(img_dir, 'cats', 'cat.1700.jpg')
        from tinynn.preprocessing import image
        import numpy as np
        img = image.load_img(img_path, target_size=(150, 150))
        img_tensor = image.img_to_array(img)
        img_tensor = np.expand_dims(img_tensor, axis=0)
        img_tensor /= 255.  # img_tensor.shape为 (1, 150, 150, 3)
        # 实例化模型
        from tinynn import models
        layer_outputs = [layer.output for layer in model.layers[:8]]  # 提取前 8 层的输出
        # 创建一个模型，给定输入，返回这些输出
        activation_model = models.Model(inputs=model.input, outputs=layer_outputs)
        # 返回8个Numpy数组组成的列表，每一层的激活对应一个数组
        activations = activation_model.predict(img_tensor)
        # 可视化第一层激活的第四个通道
        import matplotlib.pyplot as plt
        first_layer_activation = activations[0]
        plt.matshow(first_layer_activation[0, :, :, 4], cmap='viridis')
        # 可视化所有通道
        layer_names = []
        for layer in model.layers[:8]:  # 层的名称
            layer_names.append(layer.name)
        images_per_row = 16
        for layer_name, layer_activation in zip(layer_names, activations):
            n_features = layer_activation.shape[-1]  # 特征图中的特征个数
            # 特征图的形状为(1, size, size, n_features)
            size = layer_activation.shape[1]
            n_cols = n_features // images_per_row  # 矩阵中将激活通道平铺
            display_grid = np.zeros((size * n_cols, images_per_row * size))
            for col in range(n_cols):  # 每个过滤器平铺到一个大的水平网格
                for row in range(images_per_row):
                    channel_image = layer_activation[0,
                                                     :, :,
                                                     col * images_per_row + row]
                    # 特征处理，使其美观
                    channel_image -= channel_image.mean()
                    channel_image /= channel_image.std()
                    channel_image *= 64
                    channel_image += 128
                    channel_image = np.clip(channel_image, 0, 255).astype('uint8')
                    # 显示网格
                    display_grid[col * size : (col + 1) * size,
                                 row * size : (row + 1) * size] = channel_image
            scale = 1. / size
            plt.figure(figsize=(scale * display_grid.shape[1],
                                scale * display_grid.shape[0]))
            plt.title(layer_name)
            plt.grid(False)
            plt.imshow(display_grid, aspect='auto', cmap='viridis')
        # --- end of the listing ---
        plt.close('all')
        assert [a.shape for a in activations] == [(1, 148, 148, 32), (1, 74, 74, 32), (1, 72, 72, 64), (1, 36, 36, 64),
                                                  (1, 34, 34, 128), (1, 17, 17, 128), (1, 15, 15, 128), (1, 7, 7, 128)]
        h = img_tensor  # (the listing standardised the arrays in place: predict again)
        for layer, activation in zip(model.layers[:8], activation_model.predict(img_tensor)):
            h = layer(h)  # each array is that layer's own output
            assert np.allclose(activation, h, rtol=1e-5, atol=1e-6)
    """,
}


class _ImdbStandIn:
    """``keras.datasets.imdb`` offline: ragged review id lists (1 = start, ids < num_words), labels 0/1."""

    def __init__(self, rng):
        self.rng = rng

    def load_data(self, num_words=10000):
        def split(n):
            reviews = [[1, *self.rng.integers(2, num_words, self.rng.integers(10, 700))] for _ in range(n)]
            return reviews, self.rng.integers(0, 2, n)

        return split(40), split(20)


class _ConvBaseStandIn:
    """VGG16's convolutional base shape-wise: (N, 150, 150, 3) -> (N, 4, 4, 512) (a fixed random projection)."""

    def __init__(self, rng):
        self.w = rng.normal(size=(4 * 4 * 3, 4 * 4 * 512)) / 7

    def predict(self, x):
        return np.maximum(x[:, ::38, ::38, :].reshape(len(x), -1) @ self.w, 0).reshape(len(x), 4, 4, 512)


@pytest.fixture(scope="module")
def cats_and_dogs_small(tmp_path_factory):
    """The book's cats_and_dogs_small tree, 10 generated JPEGs per class and split, the book's file names."""
    from PIL import Image

    base = tmp_path_factory.mktemp("cats_and_dogs_small")
    rng = np.random.default_rng(0)
    for split, start in (("train", 0), ("validation", 1000), ("test", 1500)):
        for animal, tone in (("cat", 170), ("dog", 80)):
            folder = base / split / f"{animal}s"
            folder.mkdir(parents=True)
            for i in range(start, start + 10):
                pixels = np.clip(rng.normal(tone, 40, (24, 32, 3)), 0, 255).astype(np.uint8)
                Image.fromarray(pixels).save(folder / f"{animal}.{i}.jpg")
    pixels = np.clip(rng.normal(170, 40, (24, 32, 3)), 0, 255).astype(np.uint8)
    Image.fromarray(pixels).save(base / "test" / "cats" / "cat.1700.jpg")  # the seed's activation example
    return base


def _reviews(rng, n):
    words = ["good", "bad", "film", "plot", "actor", "boring", "great", "the", "a", "and"]
    return [" ".join(rng.choice(words, rng.integers(5, 40))) for _ in range(n)]


def _glove_writer(folder):
    def write(word_index, dim):
        rng = np.random.default_rng(1)
        path = folder / "glove.6B"
        path.mkdir(exist_ok=True)
        with open(path / "glove.6B.100d.txt", "w") as f:
            for word in list(word_index)[: len(word_index) // 2]:  # half the words have a vector
                f.write(word + " " + " ".join(f"{v:.5f}" for v in rng.normal(size=dim)) + "\n")
        return str(path)

    return write


class _MnistStandIn:
    """``keras.datasets.mnist`` offline and small: 600 / 100 random uint8 28x28 "digits" with labels 0-9."""

    def __init__(self, rng):
        self.rng = rng

    def load_data(self):
        def split(n):
            return self.rng.integers(0, 256, (n, 28, 28)).astype(np.uint8), self.rng.integers(0, 10, n)

        return split(600), split(100)


def _write_cats_and_dogs_small_2():
    """What the augmentation snippet saves: the book's convnet with Dropout, compiled, as cats_and_dogs_small_2.h5
    in the current folder."""
    from tinynn import layers, models, optimizers

    L = layers
    model = models.Sequential([
        L.Input(shape=(150, 150, 3)),
        L.Conv2D(32, (3, 3), activation="relu"), L.MaxPooling2D((2, 2)),
        L.Conv2D(64, (3, 3), activation="relu"), L.MaxPooling2D((2, 2)),
        L.Conv2D(128, (3, 3), activation="relu"), L.MaxPooling2D((2, 2)),
        L.Conv2D(128, (3, 3), activation="relu"), L.MaxPooling2D((2, 2)),
        L.Flatten(), L.Dropout(0.5), L.Dense(512, activation="relu"), L.Dense(1, activation="sigmoid"),
    ])  # fmt: skip
    model.compile(loss="binary_crossentropy", optimizer=optimizers.RMSprop(learning_rate=1e-4), metrics=["acc"])
    model.save("cats_and_dogs_small_2.h5")


@pytest.mark.parametrize("name", sorted(SNIPPETS), ids=sorted(SNIPPETS))
def test_seed_snippet_runs_on_tinynn(name, cats_and_dogs_small, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # model.save('cats_and_dogs_small_2.h5') writes into the current folder
    tinynn.set_random_seed(0)
    rng = np.random.default_rng(0)
    namespace = {
        "np": np, "os": os, "rng": rng, "imdb": _ImdbStandIn(rng), "conv_base": _ConvBaseStandIn(rng),
        "cats_and_dogs": lambda split: os.path.join(str(cats_and_dogs_small), split),
        "make_reviews": lambda n: _reviews(rng, n), "write_glove": _glove_writer(tmp_path),
        "mnist": _MnistStandIn(rng), "write_cats_and_dogs_small_2": _write_cats_and_dogs_small_2,
    }
    with warnings.catch_warnings(), np.errstate(invalid="ignore", divide="ignore"):
        warnings.simplefilter("ignore", DeprecationWarning)  # lr=, fit_generator, input_length warn, as they should
        warnings.simplefilter("ignore", RuntimeWarning)  # the seed divides dead channels by their zero std
        exec(textwrap.dedent(SNIPPETS[name]), namespace)
    model = namespace.get("model")
    if model is not None:
        assert all(np.all(np.isfinite(w)) for w in model.get_weights())
