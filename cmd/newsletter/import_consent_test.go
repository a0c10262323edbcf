package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"newsletter/subscribers"
)

// TestImportConsentShown: readers added by `subscribers import` show that import as their consent
// (who ran it, when, the file's SHA-256, the consent text named by --consent-text) on the editors' reader page and in their own data
// export; erasing one through the editors' pages leaves the import's record, which holds nothing
// of theirs.
func TestImportConsentShown(t *testing.T) {
	const password = "import consent password"
	s := startService(t, map[string]string{"NEWSLETTER_ADMIN_PASSWORD": password})
	file := []byte("email,name,lang,status,confirmed_at\nimported.reader@gazette.test,Imported Reader,en,confirmed,2024-05-01T10:00:00Z\nother@gazette.test,,en,,\n")
	path := filepath.Join(t.TempDir(), "readers.csv")
	if err := os.WriteFile(path, file, 0o600); err != nil {
		t.Fatal(err)
	}
	hexSum := fmt.Sprintf("%x", sha256.Sum256(file))
	cmd := func(args ...string) (int, string, string) {
		var stdout, stderr bytes.Buffer
		code := run(context.Background(), append([]string{"subscribers", "import"}, args...), func(k string) string { return s.Env[k] },
			strings.NewReader(""), &stdout, &stderr)
		return code, stdout.String(), stderr.String()
	}
	for _, bad := range [][]string{{path, "--consent-text"}, {"--consent-text=", path}, {"--consent-text", strings.Repeat("v", 65), path}} {
		if code, _, _ := cmd(bad...); code != exitUsage {
			t.Errorf("import %q: exit %d, want %d", bad, code, exitUsage)
		}
	}
	code, stdout, stderr := cmd(path, "--consent-text", "signup-form-2022")
	if code != exitOK {
		t.Fatalf("import: exit %d: %s", code, stderr)
	}
	if !strings.Contains(stdout, "2 new") || !strings.Contains(stdout, "file SHA-256 "+hexSum) {
		t.Errorf("import's output %q: want the new readers and the file's hash", stdout)
	}
	var uuid string
	if err := s.DB.Get(&uuid, `SELECT uuid::text FROM subscribers WHERE email = 'imported.reader@gazette.test'`); err != nil {
		t.Fatal(err)
	}

	cookie, csrf := editorSession(t, s, password)
	page := s.Get(t, "/admin/readers/"+uuid, "Cookie", cookie)
	if page.Status != http.StatusOK {
		t.Fatalf("reader's page: %d", page.Status)
	}
	text := strings.Join(strings.Fields(stripTags(page.Body)), " ")
	for _, want := range []string{"consent , confirmed", "import #", "by cli, file SHA-256 " + hexSum + ", 2 rows signup-form-2022", "none: an import"} {
		if !strings.Contains(text, want) {
			t.Errorf("the reader's page lacks %q:\n%s", want, text)
		}
	}

	res := s.Get(t, subscribers.NewSigner([]byte(e2eSecret)).ManageURL(s.URL, uuid)+"/data.json")
	if res.Status != http.StatusOK {
		t.Fatalf("data export: %d", res.Status)
	}
	var data struct{ Consents []map[string]any }
	if err := json.Unmarshal([]byte(res.Body), &data); err != nil {
		t.Fatal(err)
	}
	if len(data.Consents) != 1 || data.Consents[0]["source"] != "import" || data.Consents[0]["imported_by"] != "cli" ||
		data.Consents[0]["file_sha256"] != hexSum || data.Consents[0]["text_version"] != "signup-form-2022" || data.Consents[0]["confirmed_at"] == nil {
		t.Errorf("the reader's data export: %s", res.Body)
	}

	if r := s.PostForm(t, "/admin/readers/"+uuid+"/erase", url.Values{"confirm": {"erase"}, "csrf": {csrf}}, "Cookie", cookie); r.Status != http.StatusSeeOther {
		t.Fatalf("erase: %d", r.Status)
	}
	var kept []string
	if err := s.DB.Select(&kept, `SELECT i::text FROM imports i`); err != nil || len(kept) != 1 {
		t.Fatalf("imports after the erasure: %v, %v", kept, err)
	}
	for _, bad := range []string{"imported", "gazette", uuid} {
		if strings.Contains(kept[0], bad) {
			t.Errorf("the import's record holds %q of the erased reader: %s", bad, kept[0])
		}
	}
}
