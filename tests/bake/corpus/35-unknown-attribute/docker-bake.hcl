target "default" {
  platfroms = ["linux/amd64"]
}
