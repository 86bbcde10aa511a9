package kube

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// pki is what the control plane's security needs, written as files.
type pki struct {
	caFile, servingCert, servingKey string
	caPEM                           []byte
	saPrivate, saPublic             string
	tokenFile, adminToken           string
}

// writePKI makes a CA, a serving certificate for 127.0.0.1 and localhost
// signed by it, the service-account signing key pair and the static token
// file that authenticates the administrator.
func writePKI(dir string) (pki, error) {
	var p pki
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return p, err
	}
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return p, err
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "vigil-test-ca"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return p, fmt.Errorf("CA certificate: %w", err)
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		return p, err
	}
	p.caPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER})

	srvKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return p, err
	}
	srvTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: "kube-apiserver"},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:     []string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
	}
	srvDER, err := x509.CreateCertificate(rand.Reader, srvTmpl, ca, &srvKey.PublicKey, caKey)
	if err != nil {
		return p, fmt.Errorf("serving certificate: %w", err)
	}

	saKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return p, err
	}
	saPub, err := x509.MarshalPKIXPublicKey(&saKey.PublicKey)
	if err != nil {
		return p, err
	}
	tok := make([]byte, 16)
	if _, err := rand.Read(tok); err != nil {
		return p, err
	}
	p.adminToken = hex.EncodeToString(tok)

	p.caFile = filepath.Join(dir, "ca.crt")
	p.servingCert = filepath.Join(dir, "apiserver.crt")
	p.servingKey = filepath.Join(dir, "apiserver.key")
	p.saPrivate = filepath.Join(dir, "sa.key")
	p.saPublic = filepath.Join(dir, "sa.pub")
	p.tokenFile = filepath.Join(dir, "tokens.csv")
	files := []struct {
		path string
		data func() ([]byte, error)
	}{
		{p.caFile, func() ([]byte, error) { return p.caPEM, nil }},
		{p.servingCert, func() ([]byte, error) { return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srvDER}), nil }},
		{p.servingKey, func() ([]byte, error) { return ecKeyPEM(srvKey) }},
		{p.saPrivate, func() ([]byte, error) { return ecKeyPEM(saKey) }},
		{p.saPublic, func() ([]byte, error) { return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: saPub}), nil }},
		// token,user,uid,"groups"
		{p.tokenFile, func() ([]byte, error) {
			return fmt.Appendf(nil, "%s,admin,admin,\"system:masters\"\n", p.adminToken), nil
		}},
	}
	for _, f := range files {
		b, err := f.data()
		if err != nil {
			return p, err
		}
		if err := os.WriteFile(f.path, b, 0o600); err != nil {
			return p, err
		}
	}
	return p, nil
}

func ecKeyPEM(k *ecdsa.PrivateKey) ([]byte, error) {
	der, err := x509.MarshalECPrivateKey(k)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}), nil
}
