# One image recipe for every service (layout follows pypi/warehouse's Dockerfile
# and uv's Docker guide: build a venv in a throw-away stage, ship only the venv).
#
# The build context is prepared by our Python tooling and contains exactly:
#   installer/uv-<ver>-py3-none-<platform>.whl   uv, used only in the build stages
#   installer/SHA256SUMS                          its sha256 from wheelhouse/manifest.json
#   third-party/requirements.txt + *.whl          hash-pinned closure of dependencies
#   first-party/requirements.txt + *.whl          the service and our shared packages
#   first-party/service.env                       what to check of how the image runs the service
#   first-party/service, service-health           the entrypoint and the health check's command,
#                                                 written from [tool.wheelpipe.service]
#   first-party/importcheck.py                    imports what the service ships (stdlib only)
#   first-party/healthprobe.py                    an http service's health probe (stdlib only)
# Nothing is fetched during the build, so it works with `--network=none`.
#
# Stages, in the order the legacy builder runs them:
#   deps                  the venv with the third-party closure (build only)
#   runtime-base          the runtime image without the service's own files and
#                         without what depends on the kind of service
#   runtime-http          + health check: GET of the service's health path, EXPOSE of the port
#   runtime-worker        + no health check: the process itself is the health
#   runtime-worker-health + health check running the worker's declared command
#   runtime-deps          the one of the three SERVICE_RUNTIME names
#   app                   the service's own files, installed on top of deps and
#                         checked by importing them (build only)
#   runtime               runtime-deps + those files: the image
# The stages up to runtime-deps hold nothing specific to a service but its
# closure, kind and port, so every service with the same ones, and every
# rebuild after a code change, reuses them from the cache; the tooling builds
# them once before it builds several services at once (`invoke image --all`).
#
# No `# syntax=` line on purpose: the external frontend image cannot be pulled,
# and the file must build with both the legacy builder and BuildKit.

# Declared before the first FROM so every stage uses the very same interpreter:
# the venv's bin/python is a symlink to the base image's python3, whose path
# differs between the official image (/usr/local/bin) and the bootstrapped one
# (/usr/bin); building and running on the same base keeps that link valid.
ARG BASE_IMAGE=python:3.11-slim-bookworm
# Which runtime-<kind> stage the image starts from: http, worker or
# worker-health (the tooling passes it from [tool.wheelpipe.service]). Declared
# here because a FROM can only use an ARG declared before the first FROM.
ARG SERVICE_RUNTIME=http


# ---------------------------------------------------------------------------
# deps: the venv with the third-party closure, and the installer. It depends
# only on the base image, the installer and the third-party wheels.
# ---------------------------------------------------------------------------
FROM ${BASE_IMAGE} AS deps

# Timestamp-independent (checked-hash) .pyc files: py_compile, which uv's
# --compile-bytecode runs in the venv's interpreter, switches to hash-based pycs
# whenever this is set, so the compiled venv does not depend on when the build
# ran.
ENV SOURCE_DATE_EPOCH=315532800

# uv comes from the wheelhouse (pinned and hashed by the tooling lock), never
# from the base image or the network, and lives in /build, which never ships.
COPY installer/ /build/installer/

# In one cached layer, so that no later step pays for it again:
# - the wheel must be the one the wheelhouse verified: sha256sum checks it
#   against the hash the tooling wrote next to it, so a wheel changed since
#   then never runs (the glob must match exactly one wheel; BuildKit would
#   accept several in a COPY);
# - only the uv binary is taken out of it (a wheel is a zip file; Python's
#   zipfile keeps no permissions, hence the chmod), and run once so that a
#   binary that cannot run on this base fails here, naming uv;
# - the venv is made --without-pip: the shipped environment holds only what
#   the install manifest lists. `python3` from PATH works on every base image.
# A check that fails prints one line starting with "image check:", which the
# tooling reports as the reason the build stopped.
RUN cd /build/installer \
    && set -- uv-*.whl \
    && if [ "$#" -ne 1 ] || [ ! -f "$1" ]; then \
        echo "image check: installer/ must hold exactly one uv wheel, found: $*" >&2; exit 1; \
       fi \
    && if ! sha256sum --check --strict --quiet SHA256SUMS >/dev/null 2>&1; then \
        echo "image check: installer/$1 is not the wheel wheelhouse/manifest.json records (sha256 $(sha256sum < "$1" | cut -d' ' -f1), recorded $(cut -d' ' -f1 SHA256SUMS))" >&2; exit 1; \
       fi \
    && version="${1#uv-}" && version="${version%%-*}" \
    && python3 -c 'import shutil, sys, zipfile; shutil.copyfileobj(zipfile.ZipFile(sys.argv[1]).open(sys.argv[2]), open(sys.argv[3], "wb"))' \
        "$1" "uv-${version}.data/scripts/uv" /build/uv \
    && chmod 0755 /build/uv \
    && /build/uv --version \
    && python3 -m venv --without-pip /srv/venv

# Third-party wheels in a layer of their own, so a change to our own code does
# not invalidate (and re-run) the dependency install.
COPY third-party/ /build/wheels/third-party/

# Install the dependency closure into the venv with uv, from outside the venv:
#   env -i, --no-config  no variable or configuration file of the base image
#                        (UV_*, uv.toml) can change what uv does
#   UV_NO_INSTALLER_METADATA  no INSTALLER, REQUESTED or uv_cache.json (when uv
#                        unpacked the wheel) in the dist-infos, so the venv's
#                        files depend on the wheels alone, not on the build time
#   --python             the venv's interpreter: no discovery, no download
#   --offline --no-index never look at an index: everything is in the context
#   --no-cache           nothing kept outside the venv (a temporary cache only)
#   --require-hashes     every wheel must match the sha256 of the install manifest
#   --only-binary        no sdist builds, hence no compiler and no build backends
#   --no-deps            the manifest already is the full closure; `uv pip
#                        check` in the app stage verifies nothing is missing
#   --compile-bytecode   the runtime filesystem may be read-only, so bytecode
#                        cannot be written later
#   --link-mode copy     the venv owns plain files, never links into uv's
#                        temporary cache
RUN env -i SOURCE_DATE_EPOCH="${SOURCE_DATE_EPOCH}" UV_NO_INSTALLER_METADATA=1 /build/uv pip install --no-config \
        --python /srv/venv/bin/python --offline --no-index --no-cache \
        --require-hashes --only-binary :all: --no-deps --compile-bytecode --link-mode copy \
        --find-links /build/wheels/third-party \
        --requirement /build/wheels/third-party/requirements.txt


# ---------------------------------------------------------------------------
# runtime-base: the base image, an unprivileged account, the runtime settings
# and the deps venv. No uv, no pip, no compiler, no wheels, no caches.
# ---------------------------------------------------------------------------
FROM ${BASE_IMAGE} AS runtime-base

# Unprivileged account with fixed ids (stable file ownership across images and
# hosts, easy to match in runAsUser). It needs no home and no login shell;
# --no-log-init avoids huge sparse lastlog/faillog entries for a high uid.
# (Not --system: uid 10001 is above SYS_UID_MAX and useradd would warn.)
RUN groupadd --gid 10001 app \
    && useradd --uid 10001 --gid app --no-create-home --no-log-init \
        --home-dir /nonexistent --shell /usr/sbin/nologin app

# Venv first on PATH so `service` (and `python3`) resolve to it; never write
# .pyc at run time (they were compiled at build time and the root filesystem
# may be read-only); unbuffered output so logs reach `docker logs` immediately.
ENV PATH="/srv/venv/bin:${PATH}" \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1

# No package installer at run time, whatever the base ships: the official image
# has a global pip (+setuptools/wheel) and both bases keep ensurepip's bundled
# wheels. Done before the venv is copied in, so the only wheels that can exist
# here are the base image's. (This hides rather than shrinks: a few KB layer.)
# PIP_BREAK_SYSTEM_PACKAGES: a base marked EXTERNALLY-MANAGED (PEP 668) would
# otherwise refuse even this uninstall. uv is never here: it stays in /build
# of the build stages, and only /srv/venv and the app overlay are copied in.
RUN if python3 -m pip --version >/dev/null 2>&1; then \
        PIP_ROOT_USER_ACTION=ignore PIP_DISABLE_PIP_VERSION_CHECK=1 \
        PIP_BREAK_SYSTEM_PACKAGES=1 \
            python3 -m pip uninstall --yes pip setuptools wheel; \
    fi \
    && find / -xdev -type f -name '*.whl' -delete

# Everything from here on runs without root privileges.
USER 10001:10001

# Every service (gunicorn, or a worker) stops gracefully on SIGTERM; stated
# explicitly.
STOPSIGNAL SIGTERM

# Exec form so the service is PID 1 and receives SIGTERM directly. `service` is
# a script the app stage installs that execs the command [tool.wheelpipe.service]
# declares (a console script of the venv or python -m module), so the command
# itself becomes PID 1. Setting ENTRYPOINT also clears the base image's CMD
# (["python3"]), so by default the service starts; extra `docker run` arguments
# go to the service.
ENTRYPOINT ["service"]

# The venv with the third-party closure: identical across code changes, so this
# layer is reused. Owned by root: the service user can run it, never modify it.
COPY --from=deps --chown=0:0 /srv/venv /srv/venv


# ---------------------------------------------------------------------------
# runtime-http, runtime-worker, runtime-worker-health: what differs between
# kinds of service, after the venv so that every kind shares the layers above.
# Only settings, no files: the legacy builder makes all three whatever the
# kind (it runs every stage before the one asked for), at the cost of a few
# image configurations. A health check cannot be switched by a build arg (Docker
# expands no variables in HEALTHCHECK), hence a stage per variant.
# ---------------------------------------------------------------------------
FROM runtime-base AS runtime-http

# `service-health` (installed by the app stage) runs the standard library's
# HTTP client in the venv's interpreter: GET of the service's health path on its
# port (the value of its port variable), 2xx or 3xx passing, as a kubelet's
# httpGet probe counts. It never starts the app a second time. A short interval
# lets callers see "healthy" within a few seconds of start; the start period
# tolerates a slow start without counting failures. Override with
# `docker run --health-*`.
HEALTHCHECK --interval=5s --timeout=3s --start-period=15s --retries=3 \
    CMD ["service-health"]

# Declared last so that services on other ports share the layers above.
ARG DEFAULT_PORT

# Documents the port the service listens on by default.
EXPOSE ${DEFAULT_PORT}


FROM runtime-base AS runtime-worker

# A worker answers on no port: its health is the process. When it dies the
# container exits, which `docker ps`, a restart policy or an orchestrator
# sees; a probe that always passed would only hide that. NONE also turns off
# any health check the base image declares.
HEALTHCHECK NONE


FROM runtime-base AS runtime-worker-health

# The worker's declared health command, which the app stage installs as
# /srv/venv/bin/service-health (its words quoted, so no shell reads them).
HEALTHCHECK --interval=5s --timeout=3s --start-period=15s --retries=3 \
    CMD ["service-health"]


# The runtime of the service's kind: the stage the image starts from.
FROM runtime-${SERVICE_RUNTIME} AS runtime-deps


# ---------------------------------------------------------------------------
# app: the service and its internal packages on top of deps. Its only product
# is /build/first-party: the files this install added, laid out from /, so the
# runtime stage can add them as one small layer above the cached deps layers.
# ---------------------------------------------------------------------------
FROM deps AS app

# Our own wheels change on every commit; copying them only now keeps the
# layers above cached. First in the stage, so that from here on every step
# differs between services: two services built at once by the legacy builder
# then never both make (and cache) the same step. first-party/service.env
# names the service's kind, its command's program, port or health command
# (written by the tooling, shell syntax, values quoted): a file rather than
# build args, because an ARG is a step of its own that a code change would
# re-run.
COPY first-party/ /build/wheels/first-party/

# Same hardened install for the service and its internal shared packages (uv
# compiles only what lacks bytecode, so the deps files stay untouched); then
# fail on a wrong service.env or a command whose program is not in the venv,
# install the entrypoint and health scripts the tooling wrote (each execs its
# program by its path in the venv, never another on the PATH) and an http
# service's probe, and collect every file newer than the stamp: exactly what
# this step installed. No `pip check` here: the tooling proved, before it wrote
# the install manifest, that every requirement of every wheel it pins is met by
# another pin (from the very wheels installed here), and the image
# verification proves the venv holds exactly those pins. What neither proves
# is that the code runs with them: an incompatible pin (a library removing a
# name a module deep in its dependant imports) or an import nobody declared.
# So, last, the venv's interpreter imports every module of the first-party
# distributions, loads their entry points and those of the commands' console
# scripts, and finds what the command serves (module:object) or runs (python
# -m), calling nothing, after the collection so that nothing it could write
# ships; -I -B: nothing from the environment or the current directory, no
# bytecode written.
RUN touch /build/before-first-party \
    && . /build/wheels/first-party/service.env \
    && env -i SOURCE_DATE_EPOCH="${SOURCE_DATE_EPOCH}" UV_NO_INSTALLER_METADATA=1 /build/uv pip install --no-config \
        --python /srv/venv/bin/python --offline --no-index --no-cache \
        --require-hashes --only-binary :all: --no-deps --compile-bytecode --link-mode copy \
        --find-links /build/wheels/first-party \
        --requirement /build/wheels/first-party/requirements.txt \
    && case "${SERVICE_KIND}:${SERVICE_PORT}" in \
        http:|http:*[!0-9]*) echo "image check: SERVICE_PORT='${SERVICE_PORT}' in first-party/service.env must be a port number" >&2; exit 1;; \
        http:*|worker:) ;; \
        *) echo "image check: SERVICE_KIND='${SERVICE_KIND}' in first-party/service.env must be http (with SERVICE_PORT) or worker (without)" >&2; exit 1;; \
       esac \
    && for program in "${SERVICE_PROGRAM}" ${HEALTH_PROGRAM:+"${HEALTH_PROGRAM}"}; do \
        case "${program}" in \
            ''|*/*|.*) echo "image check: '${program}' in first-party/service.env is not a program name" >&2; exit 1;; \
        esac; \
        if [ ! -x "/srv/venv/bin/${program}" ]; then \
            echo "image check: the command runs '${program}', which is not a console script in /srv/venv/bin (the console scripts of the service's closure: $(cd /srv/venv/bin && ls | grep -v -e '^python' -e '^activate' | tr '\n' ' '))" >&2; exit 1; \
        fi; \
       done \
    && install -m 0755 /build/wheels/first-party/service /srv/venv/bin/service \
    && if [ -f /build/wheels/first-party/service-health ]; then \
        install -m 0755 /build/wheels/first-party/service-health /srv/venv/bin/service-health; \
       fi \
    && if [ "${SERVICE_KIND}" = http ]; then \
        install -m 0644 /build/wheels/first-party/healthprobe.py /srv/healthprobe.py; \
       fi \
    && mkdir /build/first-party \
    && find /srv/venv $(if [ "${SERVICE_KIND}" = http ]; then echo /srv/healthprobe.py; fi) \
        -newer /build/before-first-party \( -type f -o -type l \) \
        -exec cp -a --parents --target-directory=/build/first-party {} + \
    && /srv/venv/bin/python -I -B /build/wheels/first-party/importcheck.py --marker "image check: " \
        --requirements /build/wheels/first-party/requirements.txt \
        --command "${SERVICE_COMMAND}" ${HEALTH_COMMAND:+--command "${HEALTH_COMMAND}"} \
        --references "${SERVICE_REFERENCES}"


# ---------------------------------------------------------------------------
# runtime: runtime-deps and the service's own files. The last stage: the image.
# ---------------------------------------------------------------------------
FROM runtime-deps AS runtime

# Only the service's own files, the one layer a code change replaces.
COPY --from=app --chown=0:0 /build/first-party/ /

# OCI metadata (title, version, revision, created, source) changes on every
# commit, so it comes last: the tooling appends one LABEL instruction with the
# values written out to the copy of this file in the build context. (Not build
# args: the legacy builder makes an ARG a step of its own, and each `docker
# build --label` one more.)
