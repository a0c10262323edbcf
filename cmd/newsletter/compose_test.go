package main

import (
	"os"
	"regexp"
	"strings"
	"testing"
)

// TestComposeFile reads docker-compose.yml as compose interpolates it: no editor password and no
// demo content come by default, what must be set is asked for with ${VAR:?message}, and every
// setting it passes is one the program knows.
func TestComposeFile(t *testing.T) {
	b, err := os.ReadFile("../../docker-compose.yml")
	if err != nil {
		t.Fatal(err)
	}
	known := map[string]bool{}
	for _, s := range settings {
		known[s.name] = true
	}
	vars := map[string]string{} // NAME -> operator and default, e.g. ":-false"
	for _, m := range regexp.MustCompile(`\$\{(NEWSLETTER_[A-Z_]+)((?::?[-?])[^}]*)?\}`).FindAllStringSubmatch(string(b), -1) {
		vars[m[1]] = m[2]
		if !known[m[1]] {
			t.Errorf("compose passes %s, which the program does not read", m[1])
		}
	}
	for name, want := range map[string]string{
		"NEWSLETTER_ADMIN_PASSWORD": ":-",      // none: the password login refuses everyone
		"NEWSLETTER_SECRET":         ":-",      // none: generated and kept in the database
		"NEWSLETTER_DEMO":           ":-false", // no demo articles
	} {
		if got, ok := vars[name]; !ok || got != want {
			t.Errorf("%s is ${%s%s}, want ${%s%s}", name, name, got, name, want)
		}
	}
	if got := vars["NEWSLETTER_BASE_URL"]; !strings.HasPrefix(got, ":?") || len(got) < 20 {
		t.Errorf("NEWSLETTER_BASE_URL is ${NEWSLETTER_BASE_URL%s}, want it required with a message", got)
	}
	if strings.Contains(string(b), "demo}") || strings.Contains(strings.ToLower(string(b)), "demo=true") {
		t.Error("docker-compose.yml still has a demo default")
	}
}
