"""The Ray layer: the only package that imports ``ray``. It calls the core; it adds no science."""

# Ray starts its workers at niceness 15 (its RAY_worker_niceness), below every ordinary process,
# so on a node shared with other work any busy process starves a raydist job: beside two processes
# spinning both cores of a 2-core machine, a scoring actor got 3% of a core and a 30-image
# `ray job submit` evaluation did not finish in 5 minutes (it takes ~30 s quiet). raydist's actors
# and tasks run at niceness 0 instead, the priority the local executor has. Ray merges these
# variables into a job's own runtime environment.
WORKER_RUNTIME_ENV = {"env_vars": {"RAY_worker_niceness": "0"}}
