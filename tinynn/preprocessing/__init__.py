"""The tutorials' data utilities, Keras 2's API in NumPy/SciPy: ``sequence``, ``text``, ``image``.

    from tinynn.preprocessing import sequence                 # was: from keras.preprocessing import sequence
    from tinynn.preprocessing.text import Tokenizer           # was: from keras.preprocessing.text import Tokenizer
    from tinynn.preprocessing.image import ImageDataGenerator # was: from keras.preprocessing.image import ...
    from tinynn.utils import to_categorical                   # was: from keras.utils import to_categorical
"""

from . import image, sequence, text

__all__ = ["image", "sequence", "text"]
