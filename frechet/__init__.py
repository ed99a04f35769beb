"""FID, the standard way (TTUR's network and preprocessing), and the metrics beside it, in
TF 2: a package of its own, importing nothing of the GAN code around it (only `common`).

    frechet.weights     the network's weights: found or fetched, checked, read without torch
    frechet.preprocess  TTUR's preprocessing: TF1 bilinear resize to 299, the input scale
    frechet.inception   the 2015 Inception-v3 graph as a Keras model; InceptionFeatures
    frechet.metrics     statistics, the Fréchet distance, KID, precision/recall, density/coverage
    frechet.statistics  statistics files with their provenance, and the features beside them
    frechet.cli         `python -m frechet stats|score ...`
"""
