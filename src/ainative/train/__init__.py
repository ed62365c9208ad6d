"""Distributed training on gangs (TrainJob). See issue #3."""
