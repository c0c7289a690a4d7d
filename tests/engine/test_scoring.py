"""The scorer's resident detectors: evicted by bytes (least recently used first), never the one in use."""

from raydist.engine.scoring import Scorer, state_nbytes


def test_detectors_are_evicted_by_bytes_least_recently_used_first(wrn_model_uri):
    big = Scorer(wrn_model_uri)
    sizes = {u: state_nbytes(big.detector(u)) for u in ("blobs", "checker", "stripes")}
    assert big.cached_units == ["blobs", "checker", "stripes"] and big.cached_bytes == sum(sizes.values())
    assert min(sizes.values()) > 0

    # room for blobs + checker, not for a third bank
    sc = Scorer(wrn_model_uri, cache_mb=(sizes["blobs"] + sizes["checker"]) / 2**20)
    sc.detector("blobs")
    sc.detector("checker")
    assert sc.cached_units == ["blobs", "checker"]
    sc.detector("blobs")  # used again: now the most recent
    sc.detector("stripes")
    assert "checker" not in sc.cached_units and sc.cached_units[-1] == "stripes"
    assert sc.cached_bytes <= sc.cache_bytes or sc.cached_units == ["stripes"]

    tiny = Scorer(wrn_model_uri, cache_mb=1e-6)  # smaller than any bank: the one in use still stays
    tiny.detector("blobs")
    tiny.detector("checker")
    assert tiny.cached_units == ["checker"]


def test_only_multimodal_models_read_the_point_cloud(wrn_model_uri):
    """An 800-px cloud is 7.7 MB per row: RGB-only models never read the column."""
    from raydist.engine.rows import INPUT_COLUMNS, input_columns
    from raydist.methods import detector_class

    assert "xyz" not in Scorer(wrn_model_uri).columns
    assert input_columns(detector_class("cfm").needs_xyz) == INPUT_COLUMNS
