// Package v1alpha2 stands in for k8s.io/cri-api/pkg/apis/runtime/v1alpha2, which Debian 12
// does not package: stargz-snapshotter's resolver imports it for one type only (AuthConfig),
// used by its CRI keychain, which the benchmark's snapshotter does not enable.
package v1alpha2

// AuthConfig holds the fields of the CRI AuthConfig message that the resolver reads.
type AuthConfig struct {
	Username      string
	Password      string
	Auth          string
	ServerAddress string
	IdentityToken string
	RegistryToken string
}
