__version__ = "0.1.0"

# Hand-written apart from the version line (nbdev updates only that). fastai.layers applies `torch.jit.script` when
# imported, which torch >= 2.10 deprecates with a FutureWarning: without this, every console script would print it
# before its output or its one-line error. Import it first, with exactly that warning silenced, and only here.
import warnings as _warnings
with _warnings.catch_warnings():
    _warnings.filterwarnings('ignore', message=r'`torch\.jit\.script` is deprecated', category=FutureWarning)
    import fastai.layers
