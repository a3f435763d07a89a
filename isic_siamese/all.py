"One import for notebooks, as fastai's `all`: `from isic_siamese.all import *` gives the public API of every module."
# Hand-written (like fastai.vision.all); nbdev leaves it alone.
from .data import *
from .pairs import *
from .model import *
from .metrics import *
from .train import *
from .eval import *
from .tsne import *
from .experiment import *
