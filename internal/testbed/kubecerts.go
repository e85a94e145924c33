package testbed

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"

	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// kubeCA is the cluster's certificate authority: the API server trusts
// client certificates it signed (that is how test users authenticate),
// and clients trust the serving certificate it signed.
type kubeCA struct {
	cert    *x509.Certificate
	key     crypto.Signer
	certPEM []byte
}

func newKubeCA() (*kubeCA, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	tmpl := certTemplate()
	tmpl.Subject = pkix.Name{CommonName: "ds01 test bed CA"}
	tmpl.IsCA = true
	tmpl.BasicConstraintsValid = true
	tmpl.KeyUsage = x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("the test bed's CA: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return &kubeCA{cert: cert, key: key, certPEM: pemBlock("CERTIFICATE", der)}, nil
}

// certTemplate is what every certificate of the bed shares: valid from an
// hour ago for a day, which no test outlives.
func certTemplate() *x509.Certificate {
	serial, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 126))
	return &x509.Certificate{
		SerialNumber: serial,
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
	}
}

// issue signs a new key's certificate made from tmpl; both PEM-encoded.
func (ca *kubeCA) issue(tmpl *x509.Certificate) (certPEM, keyPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, key.Public(), ca.key)
	if err != nil {
		return nil, nil, fmt.Errorf("signing %q: %w", tmpl.Subject.CommonName, err)
	}
	keyPEM, err = ecKeyPEM(key)
	if err != nil {
		return nil, nil, err
	}
	return pemBlock("CERTIFICATE", der), keyPEM, nil
}

// serving is the API server's certificate, for the names and addresses
// clients reach it by (the service IP is the in-cluster one).
func (ca *kubeCA) serving(serviceIP net.IP) (certPEM, keyPEM []byte, err error) {
	tmpl := certTemplate()
	tmpl.Subject = pkix.Name{CommonName: "kube-apiserver"}
	tmpl.KeyUsage = x509.KeyUsageDigitalSignature
	tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
	tmpl.DNSNames = []string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local"}
	tmpl.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1), serviceIP}
	return ca.issue(tmpl)
}

// client is a client certificate for Kubernetes user `user` in groups: the
// API server reads the user from the common name and the groups from the
// organizations.
func (ca *kubeCA) client(user string, groups []string) (certPEM, keyPEM []byte, err error) {
	tmpl := certTemplate()
	tmpl.Subject = pkix.Name{CommonName: user, Organization: groups}
	tmpl.KeyUsage = x509.KeyUsageDigitalSignature
	tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	return ca.issue(tmpl)
}

// kubeconfig is a kubeconfig for server, trusting ca, authenticating with
// a client certificate, its current context in namespace (empty: the
// default).
func (ca *kubeCA) kubeconfig(server, user string, groups []string, namespace string) ([]byte, error) {
	certPEM, keyPEM, err := ca.client(user, groups)
	if err != nil {
		return nil, err
	}
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["ds01-testbed"] = &clientcmdapi.Cluster{Server: server, CertificateAuthorityData: ca.certPEM}
	cfg.AuthInfos[user] = &clientcmdapi.AuthInfo{ClientCertificateData: certPEM, ClientKeyData: keyPEM}
	cfg.Contexts["ds01-testbed"] = &clientcmdapi.Context{Cluster: "ds01-testbed", AuthInfo: user, Namespace: namespace}
	cfg.CurrentContext = "ds01-testbed"
	return clientcmd.Write(*cfg)
}

// serviceAccountKey writes the key the API server signs service account
// tokens with (and verifies them by: the private key serves as both).
func serviceAccountKey(path string) error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	b, err := ecKeyPEM(key)
	if err != nil {
		return err
	}
	return os.WriteFile(path, b, 0o600)
}

func ecKeyPEM(key *ecdsa.PrivateKey) ([]byte, error) {
	der, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, err
	}
	return pemBlock("EC PRIVATE KEY", der), nil
}

func pemBlock(kind string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: kind, Bytes: der})
}

// kubePKI is where the bed's certificates and keys are, as files for the
// processes' flags.
type kubePKI struct {
	ca                      string // the CA's certificate
	cert, key               string // serving: the API server, the scheduler, kwok
	kubeletCert, kubeletKey string // the API server's client pair for kwok's kubelet API
	serviceAccountKey       string
}

// writePKI writes the CA certificate, the serving pair every server of
// the bed shares (all are on 127.0.0.1), the API server's client pair for
// the kubelet API and the service account key into dir.
func (ca *kubeCA) writePKI(dir string, serviceIP net.IP) (kubePKI, error) {
	p := kubePKI{
		ca: filepath.Join(dir, "ca.crt"), cert: filepath.Join(dir, "serving.crt"), key: filepath.Join(dir, "serving.key"),
		kubeletCert: filepath.Join(dir, "kubelet-client.crt"), kubeletKey: filepath.Join(dir, "kubelet-client.key"),
		serviceAccountKey: filepath.Join(dir, "service-account.key"),
	}
	certPEM, keyPEM, err := ca.serving(serviceIP)
	if err != nil {
		return p, err
	}
	kcPEM, kkPEM, err := ca.client("kube-apiserver-kubelet-client", nil)
	if err != nil {
		return p, err
	}
	for _, f := range []struct {
		path string
		data []byte
	}{{p.ca, ca.certPEM}, {p.cert, certPEM}, {p.key, keyPEM}, {p.kubeletCert, kcPEM}, {p.kubeletKey, kkPEM}} {
		if err := os.WriteFile(f.path, f.data, 0o600); err != nil {
			return p, err
		}
	}
	return p, serviceAccountKey(p.serviceAccountKey)
}
