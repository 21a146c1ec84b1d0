"""scikit-learn estimators: kernel machines of infinitely wide networks (``networks``:
``NTKRegressor``, ``NTKClassifier``, ``NNGPRegressor``, on the base class of ``base``) and the
classifiers on the sphere that infinitely deep networks become (``sphere``: kernel,
nearest-neighbour, majority-vote, Hilbert kernel and Bayes classifiers)."""

from .networks import NNGPRegressor, NTKClassifier, NTKRegressor
from .sphere import BayesDirichlet, HilbertKernel, KernelClassifier, MajorityVote, NearestNeighbor

__all__ = ["BayesDirichlet", "HilbertKernel", "KernelClassifier", "MajorityVote", "NNGPRegressor",
           "NTKClassifier", "NTKRegressor", "NearestNeighbor"]
