# The PyTorch image's own build-stage steps (spliced into ../Dockerfile by build.sh; /opt/venv holds
# requirements.txt already: the CPU-only torch wheel).
# TORCH_VARIANT=cpu (default, what CI builds). TORCH_VARIANT=cuda swaps in a CUDA torch wheel, which must be
# put into wheelhouse/pytorch first (see cuda-requirements.txt); tag it apart:
#   ./build.sh --build-arg TORCH_VARIANT=cuda --prefix smkit-cuda- pytorch
ARG TORCH_VARIANT=cpu
COPY containers/pytorch/cuda-requirements.txt /src/containers/pytorch/cuda-requirements.txt
RUN case "$TORCH_VARIANT" in \
        cpu) ;; \
        cuda) rm -f /wheels/torch-*+cpu-*.whl && /opt/venv/bin/pip uninstall -y torch \
              && { /opt/venv/bin/pip install --find-links /wheels -r /src/containers/pytorch/cuda-requirements.txt || { \
                   echo "TORCH_VARIANT=cuda: the wheels of containers/pytorch/cuda-requirements.txt are not all in" \
                        "wheelhouse/pytorch" >&2; exit 1; }; } ;; \
        *) echo "TORCH_VARIANT must be cpu or cuda, not '$TORCH_VARIANT'" >&2; exit 1 ;; \
    esac
# torch's C++ headers, CMake files and static libraries are for building extensions, not for running: out.
RUN site=$(echo /opt/venv/lib/python3*/site-packages) \
    && rm -rf "$site/torch/include" "$site/torch/share" && find "$site/torch" -name '*.a' -delete
