# The identity provider's image: the wheel built in one stage, installed into a slim runtime
# that runs as an unprivileged user. Run: gunicorn -c python:idp.gunicorn_conf idp.wsgi:app (the
# default), the serving command of the installed package, as in the README's quick start.

FROM python:3.11-slim AS build
WORKDIR /src
# Every dependency exactly as locked (requirements/app.txt, refreshed by ./dev lock): released
# wheels only, so that the runtime stage needs no compiler, each checked against its hash.
COPY requirements/app.txt ./requirements/app.txt
RUN pip download --no-cache-dir --require-hashes --only-binary=:all: --dest /wheels \
        -r requirements/app.txt \
    && cp requirements/app.txt /wheels/requirements.txt
# What building the app's wheel reads: the project file, the build hook (compiles translations)
# and every folder the wheel bundles.
COPY pyproject.toml hatch_build.py README.md ./
COPY idp ./idp
COPY config ./config
COPY templates ./templates
COPY migrations ./migrations
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

FROM python:3.11-slim AS runtime
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    IDP_CONFIG=production \
    IDP_INSTANCE_PATH=/tmp/idp-instance \
    GUNICORN_BIND=0.0.0.0:8000
RUN groupadd --system --gid 10001 idp \
    && useradd --system --uid 10001 --gid idp --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin idp
COPY --from=build /wheels /wheels
# The locked dependencies, their hashes checked again, then the app alone on top of them.
RUN pip install --no-cache-dir --no-index --find-links=/wheels --require-hashes \
        -r /wheels/requirements.txt \
    && pip install --no-cache-dir --no-index --no-deps /wheels/idp-*.whl \
    && rm -rf /wheels
WORKDIR /app
# Non-root; the root filesystem can be read-only: the app writes only below /tmp.
USER 10001:10001
EXPOSE 8000 9100
CMD ["gunicorn", "-c", "python:idp.gunicorn_conf", "idp.wsgi:app"]
