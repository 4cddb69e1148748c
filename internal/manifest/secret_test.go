package manifest

import (
	"strings"
	"testing"
)

const secretDoc = `apiVersion: atoll.dev/v1
kind: Secret
metadata:
  name: db
spec:
  data:
    password: hunter2
  placement:
    nodeSelector: {site: plant-3}
`

const workloadWithSecretDoc = `apiVersion: atoll.dev/v1
kind: Workload
metadata:
  name: app
spec:
  runtime: exec
  exec:
    command: [/bin/app]
  placement:
    nodeSelector: {site: plant-3}
  secrets:
    - name: db
      env: {DB_PASSWORD: password}
      files: [password]
`

func TestDecodeAll_MixedDocuments(t *testing.T) {
	docs, err := DecodeAll("f.yaml", []byte(secretDoc+"---\n"+workloadWithSecretDoc))
	if err != nil {
		t.Fatal(err)
	}
	if len(docs.Secrets) != 1 || len(docs.Workloads) != 1 {
		t.Fatalf("got %d secrets, %d workloads; want 1 and 1", len(docs.Secrets), len(docs.Workloads))
	}
	s := docs.Secrets[0]
	if s.Metadata.Name != "db" || s.Spec.Data["password"] != "hunter2" || s.Source != "f.yaml#1" {
		t.Fatalf("secret = %+v", s)
	}
	refs := docs.Workloads[0].Spec.Secrets
	if len(refs) != 1 || refs[0].Env["DB_PASSWORD"] != "password" || refs[0].Files[0] != "password" {
		t.Fatalf("workload secrets = %+v", refs)
	}
}

func TestDecode_RefusesSecrets(t *testing.T) {
	_, err := Decode("f.yaml", []byte(secretDoc))
	want := "f.yaml#1: kind: Secret documents are applied to the hub (atoll apply), not here; use Workload"
	if err == nil || err.Error() != want {
		t.Fatalf("Decode = %v, want %q", err, want)
	}
}

func TestNormalizeSecrets_NeverQuotesValues(t *testing.T) {
	ss := []Secret{
		{APIVersion: APIVersion, Kind: KindSecret, Metadata: Metadata{Name: "db"},
			Spec: SecretSpec{Data: map[string]string{"bad/key": "hunter2", "ok": "hunter2"}}},
		{APIVersion: APIVersion, Kind: KindSecret, Metadata: Metadata{Name: "db"},
			Spec: SecretSpec{Data: map[string]string{"k": "hunter2"}}},
	}
	err := NormalizeSecrets(ss)
	if err == nil {
		t.Fatal("NormalizeSecrets accepted a bad key and a duplicate name")
	}
	msg := err.Error()
	for _, want := range []string{`document 1: spec.data["bad/key"]: "bad/key" is not a secret key`, `document 2: metadata.name: "db" is already used by document 1`} {
		if !strings.Contains(msg, want) {
			t.Errorf("error %q does not contain %q", msg, want)
		}
	}
	if strings.Contains(msg, "hunter2") {
		t.Fatalf("error quotes a secret value: %s", msg)
	}
}
