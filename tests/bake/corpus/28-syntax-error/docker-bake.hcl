target "default" {
  tags = ["a",
}
