"""Data: the paper's Dirichlet sets on the sphere, digits, input checks (``sphere``); readers of
the standard dataset files, MNIST, Fashion-MNIST, CIFAR-10 and IDX folders (``files``); and the
usual preprocessing as scikit-learn transformers (``preprocess``); arrays and labels from the
user's .npy/.npz/.csv/.txt files with errors that name the file (``arrays``)."""

from .arrays import DataFileError, read_array, read_labels, read_npz, unit_rows
from .files import (
    DATASETS,
    ENV_ROOT,
    OFFICIAL_MD5,
    load_cifar10,
    load_dataset,
    load_fashion_mnist,
    load_idx_folder,
    load_mnist,
    read_idx,
)
from .preprocess import Center, Flatten, Scale, UnitNorm, ZCAWhitening, standard_preprocessing
from .sphere import (
    PAPER_ALPHAS,
    UNIT_NORM_RTOL,
    DirichletData,
    check_labels,
    digits_sphere,
    dirichlet_setting,
    dirichlet_sphere,
    on_sphere,
    train_test,
)

__all__ = [
    "DirichletData", "dirichlet_setting", "dirichlet_sphere", "PAPER_ALPHAS", "UNIT_NORM_RTOL",
    "digits_sphere", "train_test", "on_sphere", "check_labels",
    "DATASETS", "ENV_ROOT", "OFFICIAL_MD5", "read_idx", "load_idx_folder", "load_mnist",
    "load_fashion_mnist", "load_cifar10", "load_dataset",
    "DataFileError", "read_array", "read_labels", "read_npz", "unit_rows",
    "Flatten", "Scale", "Center", "UnitNorm", "ZCAWhitening", "standard_preprocessing",
]
