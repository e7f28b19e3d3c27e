"""The procedural demo: generated activity videos, a benchmark made of them, and scores of a model on them.

Not part of the SDK's inference path: outside this package only its commands (`actfusion demo`,
`actfusion make-benchmark`) import it, and they do so lazily.

    shapes     the scene canvas and antialiased shapes
    events     what each step class looks like and how it moves
    grammar    activity grammars, classes, pacing: the script of one video
    encode     frames -> mp4 (PyAV)
    render     a script -> frames (each video with its own look and camera) -> mp4
    benchmark  a benchmark folder in the MS-TCN layout (videos, labels, splits, manifest)
    heldout    videos the demo model never saw
    scoring    the model against its encoder alone and the repeat-last-step baseline
"""
