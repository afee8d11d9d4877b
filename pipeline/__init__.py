"""Phase one, and the cache contract both phases read.

    core/       the shared kernel (options, files, manifests, errors, devices, ranks, FLOP counting)
    cache/      the feature cache: schema, writer, reader, verify / reindex (the only thing phase two
                knows of phase one)
    backbones/  the frozen networks: registry, weights, counted GFLOPs
    decode/     PyAV decoding: container (safe opening, packet index), sampling, reader
    frames.py   decoded chunks batched across videos;  batching.py: the batch size when none is given
    runner.py   the frozen modules of a run's sets;  extraction.py: one rank's loop;  extract.py: `c2f extract`
    finetune.py `c2f finetune-backbone`

May import: itself and third-party libraries; never `c2f` (phase two, deployment, report)."""
