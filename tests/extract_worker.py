"""Run one cached extraction in a separate process (for kill/resume and concurrency tests).

usage: python extract_worker.py CACHE SPEC_JSON N [SLEEP_PER_BATCH]
"""

import sys
import time

from medprobe.datasets import synthetic
from medprobe.encoders import EncoderSpec, create_encoder
from medprobe.features import extract

cache, spec_json, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
pause = float(sys.argv[4]) if len(sys.argv) > 4 else 0.0
encoder = create_encoder(EncoderSpec.model_validate_json(spec_json))
if pause:  # slow the model down so the test can kill the process mid-run
    original = encoder.encode_images

    def slow(batch):
        time.sleep(pause)
        return original(batch)

    encoder.encode_images = slow
fs = extract(
    encoder,
    synthetic("dermoscopy", n, size=64),
    cache=cache,
    batch_size=4,
    shard_batches=1,
    num_workers=0,
    show_progress=False,
)
print(fs.meta["cache_key"], len(fs))
