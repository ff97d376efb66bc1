// The JavaScript SDK v3 probe: what fromInstanceMetadata (@smithy/credential-provider-imds)
// and MetadataService (@aws-sdk/ec2-metadata-service) get from a running imds, printed as one
// JSON object; conformance/run compares it with what the server was configured with.
//
// Usage: node probe.js from-instance-metadata | metadata-service | metadata-service-v1-only
//        | from-container-metadata | from-http | otel-ecs-detector
//
// Each check runs in its own process, so the time the process takes to exit after printing
// (reportedAtMs) belongs to that check: a Node.js program is only done when its sockets are.
// The endpoint and the IMDSv1 switch come from the environment
// (AWS_EC2_METADATA_SERVICE_ENDPOINT, AWS_EC2_METADATA_V1_DISABLED), as for any SDK user; the
// container providers read AWS_CONTAINER_CREDENTIALS_FULL_URI and
// AWS_CONTAINER_AUTHORIZATION_TOKEN(_FILE). The relative URI (the ECS link-local address) is
// refused here: the suite serves that address only inside its own network namespace.
// OpenTelemetry's ECS resource detector reads ECS_CONTAINER_METADATA_URI_V4, as the ECS agent
// sets it in every container.
"use strict";

const { performance } = require("node:perf_hooks");
const { fromContainerMetadata, fromInstanceMetadata } = require("@smithy/credential-provider-imds");
const { fromHttp } = require("@aws-sdk/credential-provider-http");
const { MetadataService } = require("@aws-sdk/ec2-metadata-service");
const { awsEcsDetector } = require("@opentelemetry/resource-detector-aws");

// Runs an async function; resolves to {ok: result} or {err, status}, with milliseconds taken.
async function timed(operation) {
  const started = Date.now();
  try {
    const ok = await operation();
    return { ok, ms: Date.now() - started };
  } catch (error) {
    const status = error.statusCode ?? error.$metadata?.httpStatusCode ?? null;
    return { err: `${error.name}: ${error.message}`, status, ms: Date.now() - started };
  }
}

// The fields a credential provider's answer is judged on.
function credentialFields(credentials) {
  return {
    accessKeyId: credentials.accessKeyId,
    secretAccessKey: credentials.secretAccessKey,
    sessionToken: credentials.sessionToken,
    expiration: credentials.expiration ? credentials.expiration.toISOString() : null,
    accountId: credentials.accountId ?? null,
  };
}

const CHECKS = {
  // The container provider of @smithy/credential-provider-imds, as the default chain builds it.
  "from-container-metadata": async () => ({
    credentials: await timed(async () => credentialFields(await fromContainerMetadata()())),
  }),

  // @aws-sdk/credential-provider-http, the container provider of today's default chain.
  "from-http": async () => ({
    credentials: await timed(async () => credentialFields(await fromHttp({})())),
  }),

  // OpenTelemetry's ECS resource detector (@opentelemetry/resource-detector-aws): the container
  // and task documents of the task metadata endpoint v4. It hides its errors and leaves the
  // attributes out then, which the suite reports as missing values.
  "otel-ecs-detector": async () => ({
    resource: await timed(async () => {
      const endpoint = process.env.ECS_CONTAINER_METADATA_URI_V4 ?? "";
      if (!endpoint.startsWith("http://127.")) {
        throw new Error("ECS_CONTAINER_METADATA_URI_V4 must be a loopback URL");
      }
      const { attributes } = awsEcsDetector.detect();
      const resolved = {};
      for (const [name, value] of Object.entries(attributes ?? {})) {
        const settled = await value;
        if (settled !== undefined) {
          resolved[name] = settled;
        }
      }
      return resolved;
    }),
  }),

  // The credential provider with its defaults (1 s timeout, no retries), as the default
  // Node.js credential chain builds it.
  "from-instance-metadata": async () => ({
    credentials: await timed(async () => {
      const credentials = await fromInstanceMetadata()();
      return {
        accessKeyId: credentials.accessKeyId,
        secretAccessKey: credentials.secretAccessKey,
        sessionToken: credentials.sessionToken,
        expiration: credentials.expiration ? credentials.expiration.toISOString() : null,
      };
    }),
  }),

  // The metadata client with its defaults: a token first, then the request.
  "metadata-service": async () => {
    const metadataService = new MetadataService({});
    return {
      token: await timed(() => metadataService.fetchMetadataToken()),
      instanceId: await timed(() => metadataService.request("/latest/meta-data/instance-id", {})),
      region: await timed(() => metadataService.request("/latest/meta-data/placement/region", {})),
      userData: await timed(() => metadataService.request("/latest/user-data", {})),
      roleList: await timed(() =>
        metadataService.request("/latest/meta-data/iam/security-credentials/", {}),
      ),
    };
  },

  // A deliberately IMDSv1-only client, which never asks for a token.
  "metadata-service-v1-only": async () => {
    const v1OnlyService = new MetadataService({ disableFetchToken: true });
    return {
      instanceId: await timed(() => v1OnlyService.request("/latest/meta-data/instance-id", {})),
    };
  },
};

async function main() {
  if (process.env.AWS_CONTAINER_CREDENTIALS_RELATIVE_URI) {
    throw new Error("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI is set: it names the link-local host");
  }
  const check = CHECKS[process.argv[2]];
  if (!check) {
    throw new Error(`unknown check ${process.argv[2]}; one of ${Object.keys(CHECKS).join(", ")}`);
  }
  const report = {
    versions: {
      "@smithy/credential-provider-imds": require("@smithy/credential-provider-imds/package.json")
        .version,
      "@aws-sdk/ec2-metadata-service": require("@aws-sdk/ec2-metadata-service/package.json").version,
      "@aws-sdk/credential-provider-http": require("@aws-sdk/credential-provider-http/package.json")
        .version,
      "@opentelemetry/resource-detector-aws":
        require("@opentelemetry/resource-detector-aws/package.json").version,
    },
    calls: await check(),
  };
  report.reportedAtMs = Math.round(performance.now());
  process.stdout.write(JSON.stringify(report) + "\n");
}

main().catch((error) => {
  process.stdout.write(JSON.stringify({ fatal: `${error.name}: ${error.message}` }) + "\n");
  process.exitCode = 1;
});
