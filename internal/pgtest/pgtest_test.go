package pgtest

import (
	"context"
	"database/sql"
	"testing"
	"time"
)

// TestRestartKeepsData starts a private server, writes a row, restarts it and reads the row back;
// while it is stopped a connection attempt fails.
func TestRestartKeepsData(t *testing.T) {
	s := Start(t)
	db, err := sql.Open("postgres", s.URL("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec(`CREATE TABLE kept (v int); INSERT INTO kept VALUES (42)`); err != nil {
		t.Fatal(err)
	}
	s.Stop()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.Ping(ctx); err == nil {
		t.Fatal("the stopped server still answers")
	}
	s.Start()
	var v int
	// The pool's old connection died with the server; database/sql retries on a fresh one.
	if err := db.QueryRow(`SELECT v FROM kept`).Scan(&v); err != nil || v != 42 {
		t.Fatalf("after restart: %d, %v", v, err)
	}
	s.Kill()
	s.Start()
	if err := db.QueryRow(`SELECT v FROM kept`).Scan(&v); err != nil || v != 42 {
		t.Fatalf("after crash recovery: %d, %v", v, err)
	}
}
