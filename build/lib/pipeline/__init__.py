"""Phase one, and the cache contract both phases read.

    core/       the shared kernel (options, files, manifests, errors, devices, ranks, FLOP counting)
    cache/      the feature cache: schema, writer, reader, verify / reindex (the only thing phase two
                knows of phase one)
    backbones/  the frozen networks: registry, weights, counted GFLOPs
    decode.py   PyAV decoding and sampling;  frames.py: decoded chunks batched across videos
    runner.py   the frozen modules of a run's sets;  extract.py: `c2f extract`
    finetune.py `c2f finetune-backbone`

May import: itself and third-party libraries; never `c2f` (phase two, deployment, report)."""
