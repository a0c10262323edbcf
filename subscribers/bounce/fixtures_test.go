package bounce

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// fixture reads testdata/name with its ${NAME} placeholders filled in and CRLF line ends, as a
// message arrives. The fixtures are written from RFC 3464, RFC 5965 and the shapes real MTAs and
// feedback loops send; the placeholders hold what depends on the test's secret.
func fixture(t testing.TB, name string, vars map[string]string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	for k, v := range vars {
		s = strings.ReplaceAll(s, "${"+k+"}", v)
	}
	if i := strings.Index(s, "${"); i >= 0 {
		t.Fatalf("%s: placeholder left at %q", name, s[i:min(len(s), i+30)])
	}
	s = strings.ReplaceAll(s, "\r\n", "\n")
	return bytes.ReplaceAll([]byte(s), []byte("\n"), []byte("\r\n"))
}
