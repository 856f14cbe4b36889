"""The protocols papers report beyond mbgf's supervised, transfer and K-shot ones, and reproduction.

``classes``      the published class lists: base/novel halves, Kinetics-600's 220 zero-shot classes and
                 its three 160-class splits (shipped in ``labels/protocols``), and their synthetic stand-ins
``published``    ViFi-CLIP's training lists (``train1_few_shot_K.txt``, ``fs_base_sN_train.txt``) read
                 against a prepared dataset's own paths
``scoring``      a model (an ``inference.Predictor``) scored on a subset of a dataset's classes (the text
                 classifier of those names), as ``mbgf eval`` scores a list
``configs``      the options of ``mbgf k600-zeroshot`` and ``mbgf reproduce`` (light, for ``--help``)
``k600``         Kinetics-600 zero-shot (X-CLIP's protocol): top-1/top-5 mean ± std over three splits
``base2novel``   base-to-novel (ViFi-CLIP's protocol): 16 shots per base class, three seeds; base,
                 novel and their harmonic mean
``reproduce``    ``mbgf reproduce TABLE``: what a table needs, its plan and cost, its runs, the comparison
"""
