package main

import (
	"bytes"
	"context"
	"encoding/csv"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"newsletter/internal/testdb"
)

func TestSubscribersImportExportCommands(t *testing.T) {
	ctx := context.Background()
	env := map[string]string{"NEWSLETTER_DATABASE_URL": testdb.URL(t), "NEWSLETTER_SECRET": "dc973d679bd06c119782b204a1d8d406f156b00a3f319db4a093513e8b52ceef",
		"NEWSLETTER_LOG_LEVEL": "error"}
	cmd := func(stdin string, args ...string) (int, string, string) {
		var stdout, stderr bytes.Buffer
		code := run(ctx, append([]string{"subscribers"}, args...), func(k string) string { return env[k] }, strings.NewReader(stdin), &stdout, &stderr)
		return code, stdout.String(), stderr.String()
	}
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.csv")
	os.WriteFile(bad, []byte("email,name,lang,status,confirmed_at\nann@example.com,Ann,en,confirmed,2024-05-01T10:00:00Z\nnope,,en,,\nbob@example.com,,xx,,\ncarol@example.com,,ru,confirmed,\n"), 0o644)

	// A file with bad rows: exit 1, one line on stderr naming each bad row, nothing imported.
	code, out, errOut := cmd("", "import", bad)
	if code != exitFailure || out != "" || strings.Count(errOut, "\n") != 1 {
		t.Fatalf("bad file: exit %d, stdout %q, stderr %q; want exit 1 and one line", code, out, errOut)
	}
	for _, want := range []string{"3 bad rows", "line 3: email", "line 4: lang", "line 5: confirmed_at", "--skip-invalid"} {
		if !strings.Contains(errOut, want) {
			t.Errorf("stderr %q lacks %q", errOut, want)
		}
	}
	if code, out, _ := cmd("", "export"); code != exitOK || strings.Count(out, "\n") != 1 {
		t.Fatalf("after a refused import: exit %d, export %q; want the header only", code, out)
	}

	// The same rows from standard input with --skip-invalid after the name: the good row goes in.
	data, _ := os.ReadFile(bad)
	code, out, errOut = cmd(string(data), "import", "-", "--skip-invalid")
	if code != exitOK || !strings.Contains(out, "1 new") || !strings.Contains(errOut, "skipped 3 bad rows") {
		t.Fatalf("--skip-invalid: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	// Again, with the address in another case and a new name: updated, not duplicated.
	code, out, _ = cmd("email,name\nANN@example.com,Ann Lee\n", "import", "-")
	if code != exitOK || !strings.Contains(out, "0 new, 1 updated") {
		t.Fatalf("re-import: exit %d, stdout %q", code, out)
	}

	code, out, _ = cmd("", "export")
	if code != exitOK {
		t.Fatalf("export: exit %d", code)
	}
	records, err := csv.NewReader(strings.NewReader(out)).ReadAll()
	if err != nil || len(records) != 2 {
		t.Fatalf("export %q: %v", out, err)
	}
	if got := strings.Join(records[0], ","); got != "email,name,lang,status,created_at,confirmed_at,unsubscribed_at,newsletters" {
		t.Errorf("header %q", got)
	}
	if r := records[1]; r[0] != "ann@example.com" || r[1] != "Ann Lee" || r[3] != "confirmed" || r[5] != "2024-05-01T10:00:00Z" || r[6] != "" {
		t.Errorf("row %q", r)
	}

	for _, tc := range []struct {
		name string
		args []string
		code int
	}{
		{"no file", []string{"import"}, exitUsage},
		{"two files", []string{"import", "a.csv", "b.csv"}, exitUsage},
		{"unknown flag", []string{"import", "--force", bad}, exitUsage},
		{"missing file", []string{"import", filepath.Join(dir, "missing.csv")}, exitFailure},
		{"no header email", []string{"import", "-"}, exitFailure},
		{"export argument", []string{"export", "x"}, exitUsage},
		{"unknown subcommand", []string{"purge"}, exitUsage},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, _, errOut := cmd("name\nAnn\n", tc.args...)
			if code != tc.code || !strings.HasPrefix(errOut, "newsletter: ") {
				t.Errorf("exit %d, stderr %q; want exit %d", code, errOut, tc.code)
			}
			if tc.code == exitFailure && strings.Count(errOut, "\n") != 1 {
				t.Errorf("stderr %q is not one line", errOut)
			}
		})
	}
}
