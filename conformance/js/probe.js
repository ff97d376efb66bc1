// The JavaScript SDK v3 probe: what fromInstanceMetadata (@smithy/credential-provider-imds)
// and MetadataService (@aws-sdk/ec2-metadata-service) get from a running imds, printed as one
// JSON object; conformance/run compares it with what the server was configured with.
//
// Usage: node probe.js from-instance-metadata | metadata-service | metadata-service-v1-only
//
// Each check runs in its own process, so the time the process takes to exit after printing
// (reportedAtMs) belongs to that check: a Node.js program is only done when its sockets are.
// The endpoint and the IMDSv1 switch come from the environment
// (AWS_EC2_METADATA_SERVICE_ENDPOINT, AWS_EC2_METADATA_V1_DISABLED), as for any SDK user.
"use strict";

const { performance } = require("node:perf_hooks");
const { fromInstanceMetadata } = require("@smithy/credential-provider-imds");
const { MetadataService } = require("@aws-sdk/ec2-metadata-service");

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

const CHECKS = {
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
  const check = CHECKS[process.argv[2]];
  if (!check) {
    throw new Error(`unknown check ${process.argv[2]}; one of ${Object.keys(CHECKS).join(", ")}`);
  }
  const report = {
    versions: {
      "@smithy/credential-provider-imds": require("@smithy/credential-provider-imds/package.json")
        .version,
      "@aws-sdk/ec2-metadata-service": require("@aws-sdk/ec2-metadata-service/package.json").version,
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
