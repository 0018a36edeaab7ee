# One image for every agentfleet process: the worker (default) and, by command, the HTTP app, the
# codec endpoint or the `fleet` CLI. docker-compose.yml builds it for the `worker`, `http` and
# `codec` services.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    FLEET_HOME=/home/fleet/.fleet

# FLEET_HOME exists, owned by fleet, so the named volume compose mounts there starts with that
# owner (a volume on a missing path would belong to root, and the worker could not write to it).
RUN useradd --create-home --uid 10001 --user-group fleet \
    && install -d -o fleet -g fleet -m 0700 /home/fleet/.fleet

WORKDIR /app
# The runtime dependencies alone, at the versions constraints.txt pins (the extras stay out: the
# dev server, the channel sandbox, the test tools), in a layer that a change of the sources does
# not rebuild.
COPY pyproject.toml constraints.txt /app/
RUN python -c 'import tomllib; print(*tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"], sep="\n")' \
        > /tmp/requirements.txt \
    && pip install --no-cache-dir -c constraints.txt -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt
COPY . /app
# The workflow sandbox re-imports workflows/ for every run: ship their bytecode (the worker
# cannot write it into /app as the fleet user).
RUN pip install --no-cache-dir --no-deps . \
    && pip check \
    && rm -rf /app/build \
    && python -m compileall -q /app/workflows

USER fleet
EXPOSE 8300 8330 9464
CMD ["python", "-m", "workers.main"]
