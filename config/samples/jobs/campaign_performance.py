"""marketing/campaign-performance: attribute captured payments to campaigns, per day and country.

A PySpark batch job written against the datamesh job contract (README, "Writing a Spark job"):
everything it needs to reach its ports comes from what the operator put in its SparkApplication.

- Its inputs and outputs are environment variables: DATAMESH_INPUT_TRANSACTIONS and
  DATAMESH_INPUT_PROFILES (topics), DATAMESH_OUTPUT_REPORTS (s3a://<bucket>/) and
  DATAMESH_OUTPUT_ATTRIBUTIONS (a topic).
- Kafka: every Spark property `spark.datamesh.kafka.<option>` is passed as the Kafka source's and
  sink's `kafka.<option>` (servers, protocol, SCRAM login, trust store); the job never sees the
  password, which Kafka reads from the environment.
- S3: `s3a://` paths work as they are; S3A's endpoint, region, addressing and credentials are the
  application's hadoopConf.

It reads every record of both input topics (payments' JSON events, customers' Avro profiles),
keeps the captured payments of the last --lookback-days days, joins each with its customer's
latest profile for the country, attributes each to a campaign (last touch; the sample data has no
campaign touches, so every payment is "direct"), writes the daily report per country and currency
as Parquet under <reports bucket>/reports/date=YYYY-MM-DD/, and one record per attributed payment
to the attributions topic, keyed by campaignId.
"""

import argparse
import os

from pyspark.sql import SparkSession, Window
from pyspark.sql import functions as F
from pyspark.sql.avro.functions import from_avro
from pyspark.sql.types import LongType, StringType, StructField, StructType

KAFKA_PREFIX = "spark.datamesh.kafka."

# The payments.transactions events port's contract (JSON Schema), as Spark reads it.
PAYMENT = StructType([
    StructField("paymentId", StringType()),
    StructField("customerId", StringType()),
    StructField("state", StringType()),
    StructField("amountMinor", LongType()),
    StructField("currency", StringType()),
    StructField("paymentMethodId", StringType()),
    StructField("occurredAt", StringType()),
])

# The customers.profiles changes port's contract (Avro), as its producer declares it.
PROFILE_AVRO = """
{"type": "record", "name": "CustomerProfile", "namespace": "com.example.customers",
 "fields": [
   {"name": "customerId", "type": "string"},
   {"name": "country", "type": "string"},
   {"name": "segment", "type": ["null", "string"], "default": null},
   {"name": "email", "type": ["null", "string"], "default": null},
   {"name": "updatedAt", "type": {"type": "long", "logicalType": "timestamp-millis"}}
 ]}
"""


def kafka_options(spark):
    """The Kafka client options the operator gave the application, as the connector's options."""
    return {
        "kafka." + key[len(KAFKA_PREFIX):]: value
        for key, value in spark.sparkContext.getConf().getAll()
        if key.startswith(KAFKA_PREFIX)
    }


def read_topic(spark, kafka, topic):
    return (spark.read.format("kafka").options(**kafka)
            .option("subscribe", topic)
            .option("startingOffsets", "earliest")
            .option("endingOffsets", "latest")
            .load())


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--lookback-days", type=int, default=30)
    args = parser.parse_args()

    spark = SparkSession.builder.appName("campaign-performance").getOrCreate()
    kafka = kafka_options(spark)

    payments = (read_topic(spark, kafka, os.environ["DATAMESH_INPUT_TRANSACTIONS"])
                .select(F.from_json(F.col("value").cast("string"), PAYMENT).alias("p"))
                .select("p.*")
                .withColumn("occurredAt", F.to_timestamp("occurredAt"))
                .where(F.col("state") == "captured")
                .where(F.col("occurredAt") >= F.current_timestamp() - F.expr(f"INTERVAL {args.lookback_days} DAYS")))

    # A compacted topic: the latest record per customer is the current profile (null: erased).
    latest = Window.partitionBy("customerId").orderBy(F.col("offset").desc(), F.col("partition").desc())
    profiles = (read_topic(spark, kafka, os.environ["DATAMESH_INPUT_PROFILES"])
                .select(F.col("key").cast("string").alias("customerId"), "value", "offset", "partition")
                .withColumn("rank", F.row_number().over(latest))
                .where("rank = 1 AND value IS NOT NULL")
                .select("customerId", from_avro("value", PROFILE_AVRO).getField("country").alias("country")))

    attributions = (payments.join(profiles, "customerId", "left")
                    .select(F.lit("direct").alias("campaignId"), "paymentId", "customerId",
                            F.coalesce("country", F.lit("unknown")).alias("country"),
                            "amountMinor", "currency",
                            F.date_format("occurredAt", "yyyy-MM-dd").alias("date"))
                    .cache())

    report = (attributions.groupBy("date", "country", "currency")
              .agg(F.count("*").alias("payments"), F.sum("amountMinor").alias("revenueMinor")))
    (report.write.mode("overwrite").option("partitionOverwriteMode", "dynamic")
     .partitionBy("date").parquet(os.environ["DATAMESH_OUTPUT_REPORTS"] + "reports/"))

    (attributions.select(F.col("campaignId").alias("key"),
                         F.to_json(F.struct(*attributions.columns)).alias("value"))
     .write.format("kafka").options(**kafka)
     .option("topic", os.environ["DATAMESH_OUTPUT_ATTRIBUTIONS"])
     .save())

    print(f"campaign-performance: {attributions.count()} payments attributed, {report.count()} report rows")
    spark.stop()


if __name__ == "__main__":
    main()
