target "default" {
  output = ["type=image"]
}
