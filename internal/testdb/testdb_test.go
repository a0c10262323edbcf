package testdb

import "testing"

func TestNewAppliesMigrations(t *testing.T) {
	db := New(t)
	var n int
	if err := db.Get(&n, "SELECT count(*) FROM subscribers"); err != nil {
		t.Fatalf("subscribers table: %v", err)
	}
}
