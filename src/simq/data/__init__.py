"""Reading a user's data: files through `datasets` (memory-mapped Arrow) and ``.npz`` arrays,
split roles (train, calibration, validation, test), and encoding rows as model inputs with the
model's own tokenizer or image processor."""

from simq.data._dataset import Dataset
from simq.data._encode import model_label2id
from simq.data._load import DataOptions, DataSplits, check_data, load_data
from simq.data._read import FILE_READERS, RawData, read_data
from simq.data._roles import ROLE_OF_SPLIT, ROLES, RolePlan, assign_roles
from simq.data._sources import Examples, SplitExamples, SyntheticExamples, content_hashes, input_contents
from simq.data._synthetic import synthetic_dataset, timing_feed

__all__ = [
    "FILE_READERS",
    "ROLES",
    "ROLE_OF_SPLIT",
    "DataOptions",
    "DataSplits",
    "Dataset",
    "Examples",
    "RawData",
    "RolePlan",
    "SplitExamples",
    "SyntheticExamples",
    "assign_roles",
    "content_hashes",
    "input_contents",
    "check_data",
    "load_data",
    "model_label2id",
    "read_data",
    "synthetic_dataset",
    "timing_feed",
]
