# MLflow's image plus the two drivers the team stack needs: Postgres for the tracking store and boto3 for
# the MinIO artifact store behind the server's artifact proxy (clients never talk to MinIO).
FROM ghcr.io/mlflow/mlflow:v3.17.2
RUN pip install --no-cache-dir psycopg2-binary==2.9.13 boto3==1.44.5
