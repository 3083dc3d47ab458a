package cluster

import (
	"encoding/json"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// setSecretDefaults fills in what the API server stores for a Secret: the namespace and type
// Opaque. stringData is left as written: the store merges it into data when it applies the
// Secret, as the API server does, so that validation can name the field a key came from.
func setSecretDefaults(s *corev1.Secret) {
	if s.Namespace == "" {
		s.Namespace = DefaultNamespace
	}
	if s.Type == "" {
		s.Type = corev1.SecretTypeOpaque
	}
}

// MergeSecretStringData returns the data a Secret holds once stored: data, with every key of
// stringData set to its value (stringData wins), as the API server merges them. It returns
// s.Data itself when there is no stringData.
func MergeSecretStringData(s *corev1.Secret) map[string][]byte {
	if len(s.StringData) == 0 {
		return s.Data
	}
	out := make(map[string][]byte, len(s.Data)+len(s.StringData))
	for k, v := range s.Data {
		out[k] = v
	}
	for k, v := range s.StringData {
		out[k] = []byte(v)
	}
	return out
}

// validateSecret checks a Secret as the API server does: keys (of data and stringData) are
// valid ConfigMap keys, the merged data is at most 1 MiB, and the keys its type requires are
// there (tls.crt and tls.key for kubernetes.io/tls). The contents of a TLS Secret are not
// parsed: a bad certificate is reported by the Ingress controller that uses it, as
// ingress-nginx does.
func validateSecret(s *corev1.Secret) field.ErrorList {
	errs := validateObjectMeta(&s.ObjectMeta, KindSecret, validation.IsDNS1123Subdomain, field.NewPath("metadata"))
	dataPath := field.NewPath("data")
	for _, src := range []struct {
		path *field.Path
		keys []string
	}{{dataPath, sortedKeys(s.Data)}, {field.NewPath("stringData"), sortedKeys(s.StringData)}} {
		for _, k := range src.keys {
			for _, msg := range validation.IsConfigMapKey(k) {
				errs = append(errs, field.Invalid(src.path.Key(k), k, msg))
			}
		}
	}
	data := MergeSecretStringData(s)
	size := 0
	for _, v := range data {
		size += len(v)
	}
	if size > corev1.MaxSecretSize {
		errs = append(errs, field.TooLong(dataPath, "", corev1.MaxSecretSize))
	}
	has := func(k string) bool { _, ok := data[k]; return ok }
	require := func(keys ...string) {
		for _, k := range keys {
			if !has(k) {
				errs = append(errs, field.Required(dataPath.Key(k), "a Secret of type "+string(s.Type)+" must hold "+quoteAll(keys)))
			}
		}
	}
	switch s.Type {
	case corev1.SecretTypeTLS:
		require(corev1.TLSCertKey, corev1.TLSPrivateKeyKey)
	case corev1.SecretTypeServiceAccountToken:
		if s.Annotations[corev1.ServiceAccountNameKey] == "" {
			errs = append(errs, field.Required(field.NewPath("metadata", "annotations").Key(corev1.ServiceAccountNameKey), ""))
		}
	case corev1.SecretTypeDockercfg, corev1.SecretTypeDockerConfigJson:
		k := corev1.DockerConfigKey
		if s.Type == corev1.SecretTypeDockerConfigJson {
			k = corev1.DockerConfigJsonKey
		}
		if !has(k) {
			require(k)
		} else if err := json.Unmarshal(data[k], &map[string]any{}); err != nil {
			errs = append(errs, field.Invalid(dataPath.Key(k), "<secret contents redacted>", err.Error()))
		}
	case corev1.SecretTypeBasicAuth:
		if !has(corev1.BasicAuthUsernameKey) && !has(corev1.BasicAuthPasswordKey) {
			errs = append(errs, field.Required(dataPath.Key(corev1.BasicAuthUsernameKey), "a Secret of type "+string(s.Type)+" must hold username or password"))
			errs = append(errs, field.Required(dataPath.Key(corev1.BasicAuthPasswordKey), "a Secret of type "+string(s.Type)+" must hold username or password"))
		}
	case corev1.SecretTypeSSHAuth:
		if len(data[corev1.SSHAuthPrivateKey]) == 0 {
			require(corev1.SSHAuthPrivateKey)
		}
	}
	return errs
}

// quoteAll returns keys quoted and joined with "and": `"tls.crt" and "tls.key"`.
func quoteAll(keys []string) string {
	q := make([]string, len(keys))
	for i, k := range keys {
		q[i] = strconv.Quote(k)
	}
	if len(q) < 2 {
		return strings.Join(q, "")
	}
	return strings.Join(q[:len(q)-1], ", ") + " and " + q[len(q)-1]
}
