"""inference_on_dataset: features of a whole test set through an evaluator."""
import datetime
import logging
import time

import numpy as np

logger = logging.getLogger("fastreid_ms")

__all__ = ["inference_on_dataset", "extract_batch_features"]


def _to_numpy(x):
    return x.asnumpy() if hasattr(x, "asnumpy") else np.asarray(x)


def _as_feature_dict(outputs):
    if isinstance(outputs, dict):
        return {k: np.asarray(_to_numpy(v), dtype=np.float32) for k, v in outputs.items()}
    if isinstance(outputs, (tuple, list)):
        keys = ("global", "local")
        return {keys[i] if i < len(keys) else f"feat{i}": np.asarray(_to_numpy(v), np.float32)
                for i, v in enumerate(outputs)}
    return {"global": np.asarray(_to_numpy(outputs), dtype=np.float32)}


def _flip_images(images):
    """Horizontal flip of (B, C, H, W) images, returned as the same kind (Tensor or array)."""
    flipped = np.ascontiguousarray(_to_numpy(images)[..., ::-1])
    if hasattr(images, "asnumpy"):
        import mindspore as ms
        return ms.Tensor(flipped, dtype=images.dtype)
    return flipped


def extract_batch_features(model, images, flip=False):
    """Eval-mode features of one batch as a dict of numpy arrays; with ``flip`` the mean of
    the features of the images and of their horizontal flips."""
    feats = _as_feature_dict(model(images))
    if flip:
        flipped = _as_feature_dict(model(_flip_images(images)))
        feats = {k: (v + flipped[k]) * np.float32(0.5) for k, v in feats.items()}
    return feats


def inference_on_dataset(model, data_loader, evaluator, flip=False, log_period=None):
    """Run ``model`` (eval mode) over ``data_loader`` and return ``evaluator.evaluate()``.

    The loader yields ``(images (B, 3, H, W), pids (B,), camids (B,))``, queries first. Progress
    (batches done / total, images/s, ETA) is logged about ten times through the "fastreid_ms"
    logger. ``flip``: average each feature with that of the horizontally flipped image.
    """
    model.set_train(False)
    evaluator.reset()
    try:
        total = len(data_loader)
    except TypeError:
        total = None
    if log_period is None:
        log_period = max(1, (total or 100) // 10)
    logger.info("Start inference on %s batches%s", total if total is not None else "?",
                " (with flipped images)" if flip else "")

    start = time.perf_counter()
    warm_start, warm_images = None, 0
    num_images = 0
    idx = -1
    for idx, (images, pids, camids) in enumerate(data_loader):
        feats = extract_batch_features(model, images, flip=flip)
        evaluator.process(feats, _to_numpy(pids), _to_numpy(camids))
        batch = int(np.shape(_to_numpy(pids))[0])
        num_images += batch
        if idx == 0:
            # The first batch includes graph compilation: measure throughput after it.
            warm_start, warm_images = time.perf_counter(), num_images
        done = idx + 1
        if done % log_period == 0 or (total is not None and done == total):
            now = time.perf_counter()
            if done > 1 and now > warm_start:
                speed = (num_images - warm_images) / (now - warm_start)
                per_batch = (now - warm_start) / (done - 1)
            else:
                speed = num_images / max(now - start, 1e-9)
                per_batch = (now - start) / done
            eta = ""
            if total is not None:
                eta = ", ETA " + str(datetime.timedelta(seconds=int(per_batch * (total - done))))
            logger.info("Inference done %d/%s batches, %.1f images/s%s", done,
                        total if total is not None else "?", speed, eta)
    elapsed = time.perf_counter() - start
    logger.info("Inference of %d images (%d batches) took %s", num_images, idx + 1,
                str(datetime.timedelta(seconds=int(elapsed))))
    return evaluator.evaluate()
