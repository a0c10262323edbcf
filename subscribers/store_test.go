package subscribers

var dataSecret = []byte("data-test-secret-0123456789abcdef")
