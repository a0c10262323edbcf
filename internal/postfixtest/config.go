package postfixtest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"maps"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// writeConfig writes main.cf and master.cf for the current port.
func (s *Server) writeConfig(opts Options, dataDir string) error {
	var discard string
	if len(opts.DiscardEHLO) > 0 {
		// silent-discard: the log would otherwise note each discarded keyword on every EHLO.
		discard = "silent-discard, " + strings.Join(opts.DiscardEHLO, ", ")
	}
	main := []string{
		"compatibility_level = 3.6",
		"queue_directory = " + s.queueDir,
		"data_directory = " + dataDir,
		"mail_owner = postfix",
		"setgid_group = postdrop",
		// The log goes to a file of the instance's own (through the postlog service in master.cf),
		// never to the machine's syslog.
		"maillog_file = " + s.logFile,
		"maillog_file_prefixes = " + s.dir,
		"inet_interfaces = 127.0.0.1",
		"inet_protocols = ipv4",
		"myhostname = " + Hostname,
		"mydomain = postfixtest.invalid",
		"myorigin = $myhostname",
		"smtpd_banner = $myhostname ESMTP Postfix",
		"biff = no",
		"append_dot_mydomain = no",
		// Nothing is local: every recipient is relayed, and no system file (aliases) is read.
		"mydestination =",
		"relay_domains =",
		"local_recipient_maps =",
		"alias_maps =",
		"alias_database =",
		"mynetworks = 127.0.0.0/8",

		// What a strict relay checks of a client that may relay.
		"strict_rfc821_envelopes = yes",
		"smtpd_helo_required = yes",
		"smtpd_delay_reject = yes",
		"smtpd_helo_restrictions = reject_invalid_helo_hostname",
		"smtpd_sender_restrictions = reject_non_fqdn_sender",
		"smtpd_relay_restrictions = permit_mynetworks, reject",
		"smtpd_recipient_restrictions = reject_non_fqdn_recipient",
		"smtpd_data_restrictions = reject_unauth_pipelining",
		// Commands sent ahead without PIPELINING (or before the greeting) end the session.
		"smtpd_forbid_unauth_pipelining = yes",
		// Lines must end in CRLF; the default exempts mynetworks, which would let the client here off.
		"smtpd_forbid_bare_newline = yes",
		"smtpd_forbid_bare_newline_exclusions =",
		"smtputf8_enable = yes",
		"disable_vrfy_command = yes",
		"smtpd_discard_ehlo_keywords = " + discard,
		"smtpd_client_port_logging = yes",

		// Delivery: everything to the sink, and a deferred message is retried within seconds.
		"relayhost = [127.0.0.1]:" + strconv.Itoa(s.sink.Port),
		"default_transport = smtp",
		"relay_transport = smtp",
		"smtp_tls_security_level = none",
		"queue_run_delay = 1s",
		"minimal_backoff_time = 1s",
		"maximal_backoff_time = 2s",
	}
	// A setting of Options.Main replaces the helper's line rather than repeating the name, which
	// postconf would warn about.
	rest := maps.Clone(opts.Main)
	for i, line := range main {
		name, _, _ := strings.Cut(line, " =")
		if v, ok := rest[name]; ok {
			main[i] = name + " = " + v
			delete(rest, name)
		}
	}
	for _, k := range slices.Sorted(maps.Keys(rest)) {
		main = append(main, k+" = "+rest[k])
	}
	if err := writeConfigFile(filepath.Join(s.ConfigDir, "main.cf"), strings.Join(main, "\n")+"\n"); err != nil {
		return err
	}
	// Only what this instance uses, none of it chrooted (the chroot would need copies of system
	// files). The smtpd listens on the test's port alone.
	master := fmt.Sprintf(`# service type private unpriv chroot wakeup maxproc command
127.0.0.1:%d inet n - n - - smtpd
pickup    unix  n  -  n  60     1  pickup
cleanup   unix  n  -  n  -      0  cleanup
qmgr      unix  n  -  n  300    1  qmgr
tlsmgr    unix  -  -  n  1000?  1  tlsmgr
rewrite   unix  -  -  n  -      -  trivial-rewrite
bounce    unix  -  -  n  -      0  bounce
defer     unix  -  -  n  -      0  bounce
trace     unix  -  -  n  -      0  bounce
verify    unix  -  -  n  -      1  verify
flush     unix  n  -  n  1000?  0  flush
proxymap  unix  -  -  n  -      -  proxymap
proxywrite unix -  -  n  -      1  proxymap
smtp      unix  -  -  n  -      -  smtp
relay     unix  -  -  n  -      -  smtp
showq     unix  n  -  n  -      -  showq
error     unix  -  -  n  -      -  error
retry     unix  -  -  n  -      -  error
discard   unix  -  -  n  -      -  discard
anvil     unix  -  -  n  -      1  anvil
scache    unix  -  -  n  -      1  scache
postlog   unix-dgram n - n -    1  postlogd
`, s.Port)
	return writeConfigFile(filepath.Join(s.ConfigDir, "master.cf"), master)
}

// writeConfigFile writes a configuration file dated a few seconds back: Postfix does not trust a
// file changed within the last second (it may still be being edited) and rereads it every 300ms
// until it is older, which made every command take over a second longer.
func writeConfigFile(path, content string) error {
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		return err
	}
	past := time.Now().Add(-5 * time.Second)
	return os.Chtimes(path, past, past)
}

// selfSigned writes a certificate and key for the loopback addresses and Hostname into dir.
func selfSigned(dir string) (certFile, keyFile string, cert *x509.Certificate, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", "", nil, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 64))
	if err != nil {
		return "", "", nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: Hostname},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		DNSNames:              []string{"localhost", Hostname},
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return "", "", nil, err
	}
	if cert, err = x509.ParseCertificate(der); err != nil {
		return "", "", nil, err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return "", "", nil, err
	}
	certFile, keyFile = filepath.Join(dir, "smtpd-cert.pem"), filepath.Join(dir, "smtpd-key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		return "", "", nil, err
	}
	// The smtpd reads its key as root before it drops privileges, so root alone may read it.
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		return "", "", nil, err
	}
	return certFile, keyFile, cert, nil
}
