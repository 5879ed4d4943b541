import torch

from diffctl.data import (
    N_OPERATIONS,
    OperationSet,
    distance3,
    index_to_trits,
    make_split,
    trits_to_index,
    valuation3,
)


def test_all_operations_round_trip():
    data = OperationSet()
    assert data.trits.shape == (19_683, 9)
    assert set(data.trits.unique().tolist()) == {-1.0, 0.0, 1.0}
    assert torch.equal(trits_to_index(data.trits), data.index)
    assert len({tuple(row) for row in data.trits.long().tolist()}) == N_OPERATIONS


def test_trit_order_is_least_significant_first():
    assert index_to_trits(torch.tensor(1)).tolist() == [0, -1, -1, -1, -1, -1, -1, -1, -1]
    assert index_to_trits(torch.tensor(3)).tolist() == [-1, 0, -1, -1, -1, -1, -1, -1, -1]
    assert index_to_trits(torch.tensor(19_682)).tolist() == [1] * 9


def test_valuation_and_distance():
    n = torch.tensor([1, 2, 3, 6, 9, 18, 27, 81, 243 * 2, 3**8])
    assert valuation3(n).tolist() == [0, 0, 1, 1, 2, 2, 3, 4, 5, 8]
    d = distance3(torch.tensor([0, 0, 5, 7]), torch.tensor([0, 9, 5, 8]))
    assert d.tolist() == [0.0, 1 / 9, 0.0, 1.0]
    # ultrametric: d(a, c) <= max(d(a, b), d(b, c)) on random triples
    g = torch.Generator().manual_seed(0)
    a, b, c = torch.randint(0, N_OPERATIONS, (3, 2000), generator=g)
    assert bool((distance3(a, c) <= torch.maximum(distance3(a, b), distance3(b, c)) + 1e-15).all())


def test_split_sizes_disjoint_and_seeded():
    s = make_split(42)
    assert (len(s.train), len(s.val), len(s.test)) == (15_746, 1_968, 1_969)
    assert len(torch.cat([s.train, s.val, s.test]).unique()) == N_OPERATIONS
    assert torch.equal(make_split(42).val, s.val)
    assert not torch.equal(make_split(7).val, s.val)


def test_batches_cover_the_part_once():
    data = OperationSet()
    part = make_split(42).val
    seen = [idx for _, idx in data.batches(part, 256, torch.Generator().manual_seed(1))]
    assert [len(b) for b in seen] == [256] * 7 + [1_968 - 7 * 256]
    assert torch.equal(torch.cat(seen).sort().values, part.sort().values)
    x, idx = next(data.batches(part, 4))
    assert torch.equal(trits_to_index(x), idx)
