target "x" {
  tags = target.y.tags
}
target "y" {
  tags = target.x.tags
}
