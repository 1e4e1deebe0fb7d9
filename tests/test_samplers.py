"""Identity sampler (P x K, rank sharding, epochs, determinism) and the inference order."""
from collections import Counter

import numpy as np
import pytest

from fastreid_ms.data.samplers import SAMPLER_REGISTRY, IdentitySampler, InferenceSampler


def _source(counts):
    """(path, pid, camid) items: identity i has counts[i] images."""
    items = []
    for pid, n in enumerate(counts):
        items += [(f"img_{pid}_{k}.jpg", pid, k % 3) for k in range(n)]
    return items


# 23 identities with 1..8 images (some fewer than K = 4).
COUNTS = [1 + (i * 5) % 8 for i in range(23)]
SOURCE = _source(COUNTS)


def _batches(sampler, epoch=0):
    sampler.set_epoch(epoch)
    idx = list(sampler)
    b = sampler.batch_size
    assert len(idx) == len(sampler) and len(idx) % b == 0
    return [idx[i:i + b] for i in range(0, len(idx), b)]


def test_every_batch_is_p_ids_times_k_instances():
    sampler = SAMPLER_REGISTRY.get("IdentitySampler")(SOURCE, 16, 4, 0, 1, 7)
    batches = _batches(sampler)
    assert len(batches) == 23 // 4  # one pass over the identities, whole batches only
    for batch in batches:
        pids = [SOURCE[i][1] for i in batch]
        counts = Counter(pids)
        assert len(counts) == 4 and set(counts.values()) == {4}
        # Consecutive groups of K belong to one identity.
        assert all(len(set(pids[j:j + 4])) == 1 for j in range(0, 16, 4))
    # No identity twice in an epoch.
    all_pids = [SOURCE[b[j]][1] for b in batches for j in range(0, 16, 4)]
    assert len(all_pids) == len(set(all_pids))


def test_replacement_only_for_small_identities():
    sampler = IdentitySampler(SOURCE, 16, 4, seed=1)
    for epoch in range(5):
        for batch in _batches(sampler, epoch):
            for j in range(0, 16, 4):
                group = batch[j:j + 4]
                pid = SOURCE[group[0]][1]
                if COUNTS[pid] >= 4:
                    assert len(set(group)) == 4  # distinct images when there are enough
                else:
                    assert set(group) <= {i for i, s in enumerate(SOURCE) if s[1] == pid}


def test_ranks_get_disjoint_identities_and_equal_lengths():
    world = 3
    samplers = [IdentitySampler(SOURCE, 24, 2, rank=r, world_size=world, seed=5)
                for r in range(world)]
    assert all(s.batch_size == 8 for s in samplers)  # 24 / 3 ranks = 4 ids x 2 per rank
    for epoch in range(3):
        pid_sets = []
        lengths = set()
        for s in samplers:
            batches = _batches(s, epoch)
            lengths.add(len(batches))
            pid_sets.append({SOURCE[i][1] for b in batches for i in b})
        assert len(lengths) == 1 and lengths == {23 // world // 4}
        for a in range(world):
            for b in range(a + 1, world):
                assert not pid_sets[a] & pid_sets[b]


def test_new_order_each_epoch_and_deterministic():
    a = IdentitySampler(SOURCE, 16, 4, seed=3)
    b = IdentitySampler(SOURCE, 16, 4, seed=3)
    c = IdentitySampler(SOURCE, 16, 4, seed=4)
    orders = []
    for epoch in range(4):
        a.set_epoch(epoch)
        b.set_epoch(epoch)
        c.set_epoch(epoch)
        ia, ib, ic = list(a), list(b), list(c)
        assert ia == ib and ia != ic
        orders.append(ia)
    assert len({tuple(o) for o in orders}) == 4
    a.set_epoch(1)
    assert list(a) == orders[1]  # going back to an epoch gives its order again
    assert a.epoch_indices(1, repeat=1) != orders[1]


@pytest.mark.parametrize("batch,k,world", [(30, 4, 1), (32, 8, 3), (16, 4, 8)])
def test_divisibility_error_names_numbers(batch, k, world):
    with pytest.raises(ValueError) as info:
        IdentitySampler(SOURCE, batch, k, rank=0, world_size=world)
    message = str(info.value)
    for text in ("SOLVER.IMS_PER_BATCH", f"({batch})", "DATALOADER.NUM_INSTANCE", f"({k})",
                 f"({world})", str(k * world)):
        assert text in message
    # The suggested batch sizes are multiples of K x world.
    assert f"multiple of {k * world}" in message


def test_too_few_identities_error():
    with pytest.raises(ValueError, match="identities"):
        IdentitySampler(_source([3] * 3), 16, 4)


@pytest.mark.parametrize("size,world", [(10, 1), (10, 3), (7, 4), (3, 5)])
def test_inference_sampler_keeps_every_sample_in_order(size, world):
    parts = [list(InferenceSampler(size, r, world)) for r in range(world)]
    assert sum(parts, []) == list(range(size))
    assert [len(p) for p in parts] == [len(InferenceSampler(size, r, world))
                                       for r in range(world)]
    assert max(map(len, parts)) - min(map(len, parts)) <= 1


def test_inference_sampler_market_sizes():
    """The seed's loader drops the last partial batch (8 queries, 9 gallery images of
    Market1501 with batch 32); every one is kept here."""
    for size in (3368, 15913):
        order = np.array(list(InferenceSampler(size)))
        np.testing.assert_array_equal(order, np.arange(size))
