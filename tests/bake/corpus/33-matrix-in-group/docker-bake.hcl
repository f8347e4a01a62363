group "default" { targets = ["lint", "img"] }
target "lint" { target = "lint" }
target "img" {
  matrix = { flavor = ["slim", "full"] }
  name   = "img-${flavor}"
  target = flavor
}
