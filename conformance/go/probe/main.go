// The Go SDK probe: asks a running imds what the AWS SDK for Go (v2: the feature/ec2/imds
// client, the ec2rolecreds provider and config's default chain; v1: the ec2metadata client and
// its default credential chain) see, and prints one JSON object; conformance/run compares it
// with what the server was configured with.
//
// The endpoint comes from AWS_EC2_METADATA_SERVICE_ENDPOINT, as for any SDK user. The probe
// refuses to run without it: the SDKs' default endpoint is the link-local address, which the
// suite only ever serves inside its own network namespace.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials/ec2rolecreds"
	"github.com/aws/aws-sdk-go-v2/feature/ec2/imds"
	v1aws "github.com/aws/aws-sdk-go/aws"
	v1ec2rolecreds "github.com/aws/aws-sdk-go/aws/credentials/ec2rolecreds"
	"github.com/aws/aws-sdk-go/aws/ec2metadata"
	"github.com/aws/aws-sdk-go/aws/session"
)

// outcome is one call's result: a value or an error, and how long it took.
type outcome struct {
	OK  interface{} `json:"ok,omitempty"`
	Err string      `json:"err,omitempty"`
	Ms  int64       `json:"ms"`
}

func measure(call func() (interface{}, error)) outcome {
	started := time.Now()
	value, err := call()
	result := outcome{Ms: time.Since(started).Milliseconds()}
	if err != nil {
		result.Err = err.Error()
	} else {
		result.OK = value
	}
	return result
}

type credentials struct {
	AccessKeyID     string `json:"access_key_id"`
	SecretAccessKey string `json:"secret_access_key"`
	SessionToken    string `json:"session_token"`
	Expiry          int64  `json:"expiry"`
}

func main() {
	if os.Getenv("AWS_EC2_METADATA_SERVICE_ENDPOINT") == "" {
		fmt.Fprintln(os.Stderr, "go probe: AWS_EC2_METADATA_SERVICE_ENDPOINT is not set")
		os.Exit(2)
	}
	if os.Getenv("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI") != "" {
		fmt.Fprintln(os.Stderr, "go probe: AWS_CONTAINER_CREDENTIALS_RELATIVE_URI names the link-local host")
		os.Exit(2)
	}
	var report map[string]outcome
	if len(os.Args) > 1 && os.Args[1] == "container" {
		report = containerChains(context.Background())
	} else {
		report = metadataCalls(context.Background())
	}
	encoded, err := json.Marshal(report)
	if err != nil {
		fmt.Fprintf(os.Stderr, "go probe: %v\n", err)
		os.Exit(1)
	}
	fmt.Println(string(encoded))
}

// containerChains resolves credentials through both SDKs' default chains, which take the
// container endpoint (AWS_CONTAINER_CREDENTIALS_FULL_URI, AWS_CONTAINER_AUTHORIZATION_TOKEN)
// before IMDS.
func containerChains(ctx context.Context) map[string]outcome {
	report := map[string]outcome{}
	report["v2_default_chain"] = measure(func() (interface{}, error) {
		cfg, err := config.LoadDefaultConfig(ctx)
		if err != nil {
			return nil, err
		}
		value, err := cfg.Credentials.Retrieve(ctx)
		if err != nil {
			return nil, err
		}
		return credentials{value.AccessKeyID, value.SecretAccessKey, value.SessionToken, value.Expires.Unix()}, nil
	})
	report["v1_default_chain"] = measure(func() (interface{}, error) {
		sess, err := session.NewSession(&v1aws.Config{MaxRetries: v1aws.Int(1)})
		if err != nil {
			return nil, err
		}
		value, err := sess.Config.Credentials.GetWithContext(ctx)
		if err != nil {
			return nil, err
		}
		return credentials{AccessKeyID: value.AccessKeyID, SecretAccessKey: value.SecretAccessKey, SessionToken: value.SessionToken}, nil
	})
	return report
}

// metadataCalls asks IMDS through each SDK's metadata client and credential providers.
func metadataCalls(ctx context.Context) map[string]outcome {
	report := map[string]outcome{}

	// The region from IMDS, as config.WithEC2IMDSRegion asks for it: a refused request makes
	// LoadDefaultConfig itself fail.
	report["v2_config_region"] = measure(func() (interface{}, error) {
		cfg, err := config.LoadDefaultConfig(ctx, config.WithEC2IMDSRegion())
		if err != nil {
			return nil, err
		}
		if cfg.Region == "" {
			return nil, fmt.Errorf("no region")
		}
		return cfg.Region, nil
	})
	cfg, err := config.LoadDefaultConfig(ctx)
	if err != nil {
		report["load_default_config"] = outcome{Err: err.Error()}
		return report
	}
	client := imds.NewFromConfig(cfg)

	for name, path := range map[string]string{
		"v2_instance_id":      "instance-id",
		"v2_placement_region": "placement/region",
		"v2_role_list":        "iam/security-credentials/",
	} {
		path := path
		report[name] = measure(func() (interface{}, error) {
			answer, err := client.GetMetadata(ctx, &imds.GetMetadataInput{Path: path})
			if err != nil {
				return nil, err
			}
			defer answer.Content.Close()
			body, err := io.ReadAll(answer.Content)
			return string(body), err
		})
	}
	report["v2_user_data"] = measure(func() (interface{}, error) {
		answer, err := client.GetUserData(ctx, &imds.GetUserDataInput{})
		if err != nil {
			return nil, err
		}
		defer answer.Content.Close()
		body, err := io.ReadAll(answer.Content)
		return string(body), err
	})
	report["v2_region"] = measure(func() (interface{}, error) {
		answer, err := client.GetRegion(ctx, &imds.GetRegionInput{})
		if err != nil {
			return nil, err
		}
		return answer.Region, nil
	})
	report["v2_identity_document"] = measure(func() (interface{}, error) {
		answer, err := client.GetInstanceIdentityDocument(ctx, &imds.GetInstanceIdentityDocumentInput{})
		if err != nil {
			return nil, err
		}
		return map[string]string{
			"instance_id":       answer.InstanceID,
			"region":            answer.Region,
			"availability_zone": answer.AvailabilityZone,
			"account_id":        answer.AccountID,
		}, nil
	})
	report["v2_iam_info"] = measure(func() (interface{}, error) {
		answer, err := client.GetIAMInfo(ctx, &imds.GetIAMInfoInput{})
		if err != nil {
			return nil, err
		}
		return answer.InstanceProfileArn, nil
	})
	report["v2_ec2rolecreds"] = measure(func() (interface{}, error) {
		provider := ec2rolecreds.New(func(options *ec2rolecreds.Options) { options.Client = client })
		value, err := provider.Retrieve(ctx)
		if err != nil {
			return nil, err
		}
		return credentials{value.AccessKeyID, value.SecretAccessKey, value.SessionToken, value.Expires.Unix()}, nil
	})
	report["v2_default_chain"] = measure(func() (interface{}, error) {
		value, err := cfg.Credentials.Retrieve(ctx)
		if err != nil {
			return nil, err
		}
		return credentials{value.AccessKeyID, value.SecretAccessKey, value.SessionToken, value.Expires.Unix()}, nil
	})

	// v1: the session resolves the endpoint from the same variable.
	sess, err := session.NewSession(&v1aws.Config{MaxRetries: v1aws.Int(1)})
	if err != nil {
		report["session"] = outcome{Err: err.Error()}
		return report
	}
	metadata := ec2metadata.New(sess)
	report["v1_instance_id"] = measure(func() (interface{}, error) {
		return metadata.GetMetadataWithContext(ctx, "instance-id")
	})
	report["v1_region"] = measure(func() (interface{}, error) {
		return metadata.RegionWithContext(ctx)
	})
	report["v1_user_data"] = measure(func() (interface{}, error) {
		return metadata.GetUserDataWithContext(ctx)
	})
	report["v1_identity_document"] = measure(func() (interface{}, error) {
		document, err := metadata.GetInstanceIdentityDocumentWithContext(ctx)
		if err != nil {
			return nil, err
		}
		return map[string]string{
			"instance_id":       document.InstanceID,
			"region":            document.Region,
			"availability_zone": document.AvailabilityZone,
			"account_id":        document.AccountID,
		}, nil
	})
	report["v1_ec2rolecreds"] = measure(func() (interface{}, error) {
		provider := v1ec2rolecreds.NewCredentialsWithClient(metadata)
		value, err := provider.GetWithContext(ctx)
		if err != nil {
			return nil, err
		}
		expiry, err := provider.ExpiresAt()
		if err != nil {
			return nil, err
		}
		return credentials{value.AccessKeyID, value.SecretAccessKey, value.SessionToken, expiry.Unix()}, nil
	})
	// The session's default chain does not say when its credentials expire (its ExpiresAt is
	// only for providers that do), so only the keys are compared.
	report["v1_default_chain"] = measure(func() (interface{}, error) {
		value, err := sess.Config.Credentials.GetWithContext(ctx)
		if err != nil {
			return nil, err
		}
		return credentials{AccessKeyID: value.AccessKeyID, SecretAccessKey: value.SecretAccessKey, SessionToken: value.SessionToken}, nil
	})

	return report
}
