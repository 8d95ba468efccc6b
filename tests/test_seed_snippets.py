"""Every Keras snippet of the seed tutorials (../shared/seeds) that uses tinynn's layers runs on tinynn.

Each snippet below is the tutorial's code with only its imports changed (and sizes/epochs shrunk so the
suite stays fast); the data are small synthetic stand-ins of the right shape and dtype.
"""

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
    "seed001 Embedding+Flatten+Dense, pretrained frozen embeddings": """
        from tinynn.models import Sequential
        from tinynn.layers import Flatten, Dense, Embedding
        maxlen, max_words, embedding_dim = 20, 1000, 100
        model = Sequential()
        model.add(Embedding(max_words, embedding_dim, input_length=maxlen))
        model.add(Flatten())
        model.add(Dense(32, activation='relu'))
        model.add(Dense(1, activation='sigmoid'))
        model.build((None, maxlen))
        embedding_matrix = rng.normal(size=(max_words, embedding_dim))
        model.layers[0].set_weights([embedding_matrix])
        model.layers[0].trainable = False
        model.compile(optimizer='rmsprop', loss='binary_crossentropy', metrics=['acc'])
        model.fit(rng.integers(0, max_words, (30, maxlen)), rng.integers(0, 2, 30), epochs=2, batch_size=32)
        assert np.allclose(model.layers[0].get_weights()[0], embedding_matrix.astype('float32'))
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
    "seed001 LSTM on reversed sequences": """
        from tinynn import layers
        from tinynn.models import Sequential
        max_features, maxlen = 500, 30
        x_train = [rng.integers(1, max_features, rng.integers(5, 40)) for _ in range(40)]
        y_train = rng.integers(0, 2, 40)
        x_train = [x[::-1] for x in x_train]
        x_train = np.stack([np.pad(x[-maxlen:], (maxlen - len(x[-maxlen:]), 0)) for x in x_train])
        model = Sequential()
        model.add(layers.Embedding(max_features, 128))
        model.add(layers.LSTM(32))
        model.add(layers.Dense(1, activation='sigmoid'))
        model.compile(optimizer='rmsprop', loss='binary_crossentropy', metrics=['acc'])
        history = model.fit(x_train, y_train, epochs=2, batch_size=128, validation_split=0.2)
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
    "seed001 visualizing intermediate activations (activation model from a Sequential's layer outputs)": """
        import matplotlib
        matplotlib.use('Agg')
        from tinynn import models
        from tinynn import layers
        model = models.Sequential()
        if hasattr(layers, 'Conv2D'):  # the seed's cats-vs-dogs convnet (its 8 first layers), on 40x40 images
            model.add(layers.Conv2D(32, (3, 3), activation='relu', input_shape=(40, 40, 3)))
            model.add(layers.MaxPooling2D((2, 2)))
            model.add(layers.Conv2D(64, (3, 3), activation='relu'))
            model.add(layers.MaxPooling2D((2, 2)))
            model.add(layers.Conv2D(64, (3, 3), activation='relu'))
            model.add(layers.MaxPooling2D((2, 2)))
            model.add(layers.Conv2D(32, (1, 1), activation='relu'))
            model.add(layers.MaxPooling2D((1, 1)))
        else:  # until tinynn has Conv2D: 8 layers with the same (1, size, size, channels) activations, per pixel
            model.add(layers.Dense(32, activation='relu', input_shape=(40, 40, 3)))
            model.add(layers.Dense(32, activation='relu'))
            model.add(layers.Reshape((20, 20, 128)))
            model.add(layers.Dense(64, activation='relu'))
            model.add(layers.Dense(64))
            model.add(layers.Reshape((10, 10, 256)))
            model.add(layers.Dense(32, activation='relu'))
            model.add(layers.Activation('relu'))
        model.add(layers.Flatten())
        model.add(layers.Dense(1, activation='sigmoid'))
        img_tensor = rng.random((1, 40, 40, 3)).astype('float32')
        # --- from here the seed's listing, verbatim (imports changed) ---
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
        assert len(activations) == 8 and [a.ndim for a in activations] == [4] * 8 and activations[0].shape[0] == 1
        h = img_tensor  # (the listing standardised the arrays in place: predict again)
        for layer, activation in zip(model.layers[:8], activation_model.predict(img_tensor)):
            h = layer(h)  # each array is that layer's own output
            assert np.allclose(activation, h, rtol=1e-5, atol=1e-6)
    """,
}


@pytest.mark.parametrize("name", sorted(SNIPPETS))
def test_seed_snippet_runs_on_tinynn(name):
    tinynn.set_random_seed(0)
    namespace = {"np": np, "rng": np.random.default_rng(0)}
    with warnings.catch_warnings(), np.errstate(invalid="ignore", divide="ignore"):
        warnings.simplefilter("ignore", DeprecationWarning)  # lr= and fit_generator warn, as they should
        warnings.simplefilter("ignore", RuntimeWarning)  # the seed divides dead channels by their zero std
        exec(textwrap.dedent(SNIPPETS[name]), namespace)
    model = namespace["model"]
    assert all(np.all(np.isfinite(w)) for w in model.get_weights())
