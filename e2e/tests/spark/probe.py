"""An attacker's Spark job, for e2e/tests/test_spark_jobs.py: with the Kafka options and S3A
settings its SparkApplication gives it (its own domain's credentials) and Spark's full local
privileges, it tries to read a topic and to write into a bucket, and prints one JSON line per
attempt: {"attempt": ..., "outcome": "ok" | "denied", "error": ...}. It always exits 0, so that
the test tells "refused by the broker or the store" from "the job broke"."""

import argparse
import json

from pyspark.sql import SparkSession

KAFKA_PREFIX = "spark.datamesh.kafka."
DENIALS = ("TopicAuthorizationException", "GroupAuthorizationException", "Not authorized",
           "AccessDenied", "403 Forbidden", "Status Code: 403")


def attempt(name, action):
    try:
        detail = action()
        print(json.dumps({"attempt": name, "outcome": "ok", "detail": detail}), flush=True)
    except Exception as error:  # noqa: BLE001: py4j wraps every JVM error
        text = str(error)
        outcome = "denied" if any(d in text for d in DENIALS) else "failed"
        print(json.dumps({"attempt": name, "outcome": outcome, "error": text[:2000]}), flush=True)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--read-topic", required=True)
    parser.add_argument("--write-path", required=True)
    args = parser.parse_args()
    spark = SparkSession.builder.appName("probe").getOrCreate()
    kafka = {"kafka." + k[len(KAFKA_PREFIX):]: v for k, v in spark.sparkContext.getConf().getAll()
             if k.startswith(KAFKA_PREFIX)}
    attempt("read-topic", lambda: spark.read.format("kafka").options(**kafka)
            .option("subscribe", args.read_topic).option("startingOffsets", "earliest")
            .option("endingOffsets", "latest").load().count())
    attempt("write-bucket", lambda: spark.createDataFrame([("stolen",)], ["x"]).write.mode("overwrite")
            .parquet(args.write_path) or "written")
    spark.stop()


if __name__ == "__main__":
    main()
