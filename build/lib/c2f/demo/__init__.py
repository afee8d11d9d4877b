"""The embedded demo and the data made up for tests and benches: `videos` (the demo's H.264 videos:
a texture readable at 224 px only, on a square shown on a few frames), `steps` (what `c2f demo`
runs, as `c2f` command lines) and `synthetic` (feature caches with a known answer, written through
the real cache schema).

May import: pipeline (the manifest writer, the cache writer); nothing imports it but the command
line, tests and benches."""
