# One image recipe for every service (layout follows pypi/warehouse's Dockerfile
# and uv's Docker guide: build a venv in a throw-away stage, ship only the venv).
#
# The build context is prepared by our Python tooling and contains exactly:
#   installer/pip-<ver>-py3-none-any.whl   pip, used only in the builder stage
#   third-party/requirements.txt + *.whl   hash-pinned closure of dependencies
#   first-party/requirements.txt + *.whl   the service and our shared packages
# Nothing is fetched during the build, so it works with `--network=none`.
#
# No `# syntax=` line on purpose: the external frontend image cannot be pulled,
# and the file must build with both the legacy builder and BuildKit.

# Declared before the first FROM so both stages use the very same interpreter:
# the venv's bin/python is a symlink to the base image's python3, whose path
# differs between the official image (/usr/local/bin) and the bootstrapped one
# (/usr/bin); building and running on the same base keeps that link valid.
ARG BASE_IMAGE=python:3.11-slim-bookworm


# ---------------------------------------------------------------------------
# deps: the venv with the third-party closure. It depends only on the base image
# and the third-party wheels, so every service with the same locked closure, and
# every rebuild after a code change, reuses it from the cache.
# ---------------------------------------------------------------------------
FROM ${BASE_IMAGE} AS deps

# Timestamp-independent (checked-hash) .pyc files: py_compile, which pip uses
# to byte-compile at install time, switches to hash-based pycs whenever this is
# set, so the compiled venv does not depend on when the build ran.
ENV SOURCE_DATE_EPOCH=315532800

# Paths: /srv/venv is what the image ships; /build holds what only the build
# stages use and never reaches the runtime stage.
# A venv without pip/setuptools/wheel: the shipped environment holds only what
# the install manifest lists. `python3` from PATH works on every base image.
RUN python3 -m venv --without-pip /srv/venv

# pip comes from the wheelhouse (pinned and hashed by the tooling lock), never
# from the base image, and lives outside the venv so it never ships.
COPY installer/ /build/installer/

# Unpack the one pip wheel and byte-compile it once, in a cached layer, so that
# every later pip run starts fast. The glob is expanded by the shell and must
# match exactly one wheel (BuildKit would accept several in a COPY).
RUN set -- /build/installer/pip-*-py3-none-any.whl \
    && if [ "$#" -ne 1 ] || [ ! -f "$1" ]; then \
        echo "installer/ must hold exactly one pip wheel, found: $*" >&2; exit 1; \
       fi \
    && python3 -m zipfile -e "$1" /build/pip \
    && python3 -m compileall -q /build/pip

# Third-party wheels first, in their own layers, so a change to our own code
# does not invalidate (and re-run) the dependency install.
COPY third-party/ /build/wheels/third-party/

# Install the dependency closure into the venv by running pip with the venv's
# interpreter (so pip targets the venv without being in it):
#   --isolated        ignore any pip config/env var present in the base image
#   --no-index        never look at an index: everything is in the context
#   --require-hashes  every wheel must match the sha256 of the install manifest
#   --only-binary     no sdist builds, hence no compiler and no build backends
#   --no-deps         the manifest already is the full closure; `pip check`
#                     below verifies nothing is missing
# pip byte-compiles by default, which we keep: the runtime filesystem may be
# read-only, so bytecode cannot be written later.
RUN /srv/venv/bin/python /build/pip/pip install \
        --isolated --disable-pip-version-check --no-input --root-user-action=ignore \
        --no-index --no-cache-dir --require-hashes --only-binary :all: --no-deps \
        --find-links /build/wheels/third-party \
        --requirement /build/wheels/third-party/requirements.txt


# ---------------------------------------------------------------------------
# app: the service and its internal packages on top of deps. Its only product
# is /build/first-party: the files this install added, laid out from /, so the
# runtime stage can add them as one small layer above the cached deps layer.
# ---------------------------------------------------------------------------
FROM deps AS app

# Our own wheels change on every commit; copying them only now keeps the
# layers above cached.
COPY first-party/ /build/wheels/first-party/

# Declared this late so that switching services only affects the steps below.
ARG SERVICE_COMMAND
ARG DEFAULT_PORT

# Same hardened install for the service and its internal shared packages; then
# fail on an inconsistent environment (`pip check`) or wrong build args, give
# the console script a fixed name for the exec-form ENTRYPOINT/HEALTHCHECK, and
# collect every file newer than the stamp: exactly what this step installed.
RUN touch /build/before-first-party \
    && /srv/venv/bin/python /build/pip/pip install \
        --isolated --disable-pip-version-check --no-input --root-user-action=ignore \
        --no-index --no-cache-dir --require-hashes --only-binary :all: --no-deps \
        --find-links /build/wheels/first-party \
        --requirement /build/wheels/first-party/requirements.txt \
    && /srv/venv/bin/python /build/pip/pip check --isolated --disable-pip-version-check \
    && case "${DEFAULT_PORT}" in \
        ''|*[!0-9]*) echo "DEFAULT_PORT='${DEFAULT_PORT}' must be a port number" >&2; exit 1;; \
       esac \
    && if [ -z "${SERVICE_COMMAND}" ] || [ ! -x "/srv/venv/bin/${SERVICE_COMMAND}" ]; then \
        echo "SERVICE_COMMAND='${SERVICE_COMMAND}' is not a console script in /srv/venv/bin" >&2; exit 1; \
       fi \
    && ln -s "${SERVICE_COMMAND}" /srv/venv/bin/service \
    && mkdir /build/first-party \
    && find /srv/venv -newer /build/before-first-party \( -type f -o -type l \) \
        -exec cp -a --parents {} /build/first-party/ \;


# ---------------------------------------------------------------------------
# runtime: base image + the venv. No pip, no compiler, no wheels, no caches.
# ---------------------------------------------------------------------------
FROM ${BASE_IMAGE} AS runtime

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
# otherwise refuse even this uninstall.
RUN if python3 -m pip --version >/dev/null 2>&1; then \
        PIP_ROOT_USER_ACTION=ignore PIP_DISABLE_PIP_VERSION_CHECK=1 \
        PIP_BREAK_SYSTEM_PACKAGES=1 \
            python3 -m pip uninstall --yes pip setuptools wheel; \
    fi \
    && find / -xdev -type f -name '*.whl' -delete

# Everything from here on runs without root privileges.
USER 10001:10001

# Declared here (not at the top) so a different port only affects what follows.
ARG DEFAULT_PORT

# Documents the port the service listens on by default.
EXPOSE ${DEFAULT_PORT}

# The service (gunicorn) shuts down gracefully on SIGTERM; stated explicitly.
STOPSIGNAL SIGTERM

# Exec form: no shell needed. `service healthcheck` exits 0 when GET /healthz
# on the service's port answers 200. A short interval lets callers see
# "healthy" within a few seconds of start; the start period tolerates a slow
# start without counting failures. Override with `docker run --health-*`.
HEALTHCHECK --interval=5s --timeout=3s --start-period=15s --retries=3 \
    CMD ["service", "healthcheck"]

# Exec form so the service is PID 1 and receives SIGTERM directly. Setting
# ENTRYPOINT also clears the base image's CMD (["python3"]), so by default the
# service starts serving; extra `docker run` arguments go to the service.
ENTRYPOINT ["service"]

# The venv with the third-party closure: identical across code changes, so this
# layer is reused. Owned by root: the service user can run it, never modify it.
COPY --from=deps --chown=0:0 /srv/venv /srv/venv

# Only the service's own files, the one layer a code change replaces.
COPY --from=app --chown=0:0 /build/first-party/ /

# OCI metadata changes on every build (revision, timestamp), so it comes last
# and only ever invalidates this final, layer-less instruction.
ARG SERVICE="" \
    VERSION="" \
    REVISION="" \
    CREATED="" \
    SOURCE=""
LABEL org.opencontainers.image.title="${SERVICE}" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.source="${SOURCE}"
