"""Named example models and their data.

Random-weight transformers models (``bert-base``, ``vit-base``, ``resnet50``, ``clip-small`` and
tiny versions of each) serve speed and size work; real ones (``minilm-tweets``, and
``digits-cnn``, ``digits-vit``, ``digits-resnet`` trained on scikit-learn's digits) serve accuracy
work. Models are exported to ONNX on first use and cached; building needs the ``torch`` and
``examples`` extras, nothing is downloaded.

Example:
    >>> from simq.zoo import Zoo
    >>> zoo = Zoo()
    >>> path = zoo.path("digits-cnn")
    >>> test = zoo.data("digits-cnn", "test")
"""

from simq.zoo._data import Dataset
from simq.zoo._spec import InputSpec, ZooEntry
from simq.zoo._zoo import Zoo, default_cache_dir

__all__ = ["Dataset", "InputSpec", "Zoo", "ZooEntry", "default_cache_dir"]
