"""The engine: pure stages over work units, run by the local executor here or the Ray one in ``raydist.distributed``.

evaluate: ``units.list_units`` -> ``stages.score_unit`` -> ``stages.segment_unit`` -> ``results.write_unit``,
then ``metrics.json`` from the unit summaries only (``results.finish``). fit: ``fit.fit_unit`` per class
(or once for the archive), each saved as it finishes. Nothing here imports Ray.
"""
