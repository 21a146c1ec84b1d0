"""Data: the paper's Dirichlet sets on the sphere (``dirichlet``); digits, splits and input
checks on the sphere (``sphere``); the standard datasets by name, MNIST, Fashion-MNIST, CIFAR-10
and IDX folders (``files``), with the IDX format (``idx``), CIFAR-10's python batches
(``cifar``) and the official checksums, mirrors and downloads (``downloads``); the usual
preprocessing as scikit-learn transformers (``preprocess``); arrays and labels from the user's
.npy/.npz/.csv/.txt files with errors that name the file (``arrays``)."""

from .arrays import DataFileError, read_array, read_labels, read_npz, unit_rows
from .cifar import load_cifar10
from .dirichlet import PAPER_ALPHAS, DirichletData, dirichlet_setting, dirichlet_sphere
from .downloads import ENV_ROOT, OFFICIAL_MD5
from .files import DATASETS, load_dataset, load_fashion_mnist, load_mnist
from .idx import load_idx_folder, read_idx
from .preprocess import Center, Flatten, Scale, UnitNorm, ZCAWhitening, standard_preprocessing
from .sphere import UNIT_NORM_RTOL, check_labels, digits_sphere, on_sphere, train_test

__all__ = [
    "DirichletData", "dirichlet_setting", "dirichlet_sphere", "PAPER_ALPHAS", "UNIT_NORM_RTOL",
    "digits_sphere", "train_test", "on_sphere", "check_labels",
    "DATASETS", "ENV_ROOT", "OFFICIAL_MD5", "read_idx", "load_idx_folder", "load_mnist",
    "load_fashion_mnist", "load_cifar10", "load_dataset",
    "DataFileError", "read_array", "read_labels", "read_npz", "unit_rows",
    "Flatten", "Scale", "Center", "UnitNorm", "ZCAWhitening", "standard_preprocessing",
]
