group "default" { targets = ["a", "b"] }
target "a" { tags = ["acme/a"] }
target "b" { tags = ["acme/b"] }
target "c" { tags = ["acme/c"] }
