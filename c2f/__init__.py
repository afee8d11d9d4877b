"""c2f: coarse-to-fine video recognition on a feature cache (LiteEval, AdaFocus).

Phase two and everything after phase one:

    methods.py, heads/   one record per method; one file per head, with its settings
    data.py              a role's features as batches (every read recorded, for honest FLOPs)
    evaluate.py          a head over a split: scores, FLOPs charged, metrics, decisions
    config.py            a run's settings (shared ones; each method's own live beside its head)
    rundir.py            a run folder: the only writer and reader of its files
    training/            `c2f train-head`, `c2f evaluate-online`
    predict/             deployment: `c2f predict` on raw video
    report/              `c2f report`: the papers' tables, figures
    demo/                the embedded demo (its videos, its steps) and synthetic caches
    cli.py               the command line (`c2f`; `python -m c2f` through __main__.py): it only parses

Phase one is `pipeline` (its kernel `pipeline.core` and the cache contract `pipeline.cache` are
shared). Nothing in `pipeline` imports `c2f`."""

__version__ = "0.2.0"
