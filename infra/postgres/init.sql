-- Run once by the postgres image on an empty volume (docker-entrypoint-initdb.d): POSTGRES_DB creates
-- `mlflow`; Prefect's server needs its own database.
CREATE DATABASE prefect OWNER logicflow;
