target "default" {
  tags = ["acme/app:from-bake"]
  args = { A = "bake" }
}
